"""The headline figures of each benchmark's JSON report, its loss count and the targets.

One place reads the reports' layouts (each scenario writes its own), so the runner (quick
checks, repeats) and the report page agree on what a figure is called and what it means.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FIGURES", "TARGETS", "Measured", "Target", "figures", "lost"]

Figures = dict[str, float | None]


@dataclass(kw_only=True)
class Measured:
    """What a scenario's result ends with, whatever else it measures: latency percentiles
    where it times something, and the figures particular to the scenario."""

    p50_ms: float | None = None
    p99_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """A goal from issue #15 on one figure."""

    scenario: str
    figure: str
    at_least: float
    text: str


TARGETS = (
    Target(
        "e2e",
        "best_rate_per_s",
        12_000,
        "e2e: p99 device -> WebSocket client <= 30 ms with 0 loss at >= 12,000 readings/s",
    ),
    Target("rest", "streaming_over_def", 10, "streaming path >= 10x the course-style `def`"),
    Target("rest", "streaming_over_async", 5, "streaming path >= 5x the `async def` one"),
    Target("pipeline", "batched_vs_per_message", 8, "micro-batched >= 8x per-message"),
    Target(
        "pipeline",
        "saturate_readings_per_s",
        25_000,
        "device -> Redis >= 25,000 readings/s at QoS 1 with 0 loss",
    ),
    Target(
        "gateway",
        "deliveries_per_s_500",
        1_000_000,
        "gateway >= 1M item deliveries/s to 500 clients",
    ),
)


def _num(x: Any) -> float | None:
    if x is None:
        return None
    value = float(x)
    return None if math.isnan(value) else value


def _e2e(r: dict[str, Any]) -> Figures:
    out: Figures = {"best_rate_per_s": _num(r.get("best_rate_per_s"))}
    for x in r["results"]:
        rate = f"{x['offered_per_s']:.0f}"
        out[f"delivered_per_s@{rate}"] = x["delivered_per_s"]
        out[f"p99_total_ms@{rate}"] = _num(x["latency_ms"]["total"]["p99"])
    return out


def _rest(r: dict[str, Any]) -> Figures:
    out: Figures = {f"{x['name']}_readings_per_s": x["readings_per_s"] for x in r["results"]}
    out |= {f"{x['name']}_cpu_us_per_reading": x["server_cpu_us_per_reading"] for x in r["results"]}
    return out | {k: _num(v) for k, v in r["ratios"].items()}


def _pipeline(r: dict[str, Any]) -> Figures:
    out: Figures = {"batched_vs_per_message": _num(r.get("batched_vs_per_message"))}
    for x in r["results"]:
        source = x["extra"]["source"]
        tag = "" if (source, x["protocol"]) == ("mqtt", "5") else f"_{source}_{x['protocol']}"
        if x["scenario"] == "saturate":
            out[f"saturate_readings_per_s{tag}"] = x["stored_per_s"]
            out[f"saturate_worker_cpu_us{tag}"] = x["worker_cpu_us_per_reading"]
        elif x["scenario"] == "latency":
            out[f"latency_p99_ms{tag}"] = x["p99_ms"]
        elif x["scenario"] == "baseline":
            out["per_message_readings_per_s"] = x["stored_per_s"]
    return out


def _batching(r: dict[str, Any]) -> Figures:
    out: Figures = {}
    if "summary" in r:  # medians over --repeats pairs
        for x in r["summary"]:
            key = f"{x['policy']}@{x['offered_per_s']:.0f}"
            out[f"p99_ms_{key}"] = x["p99_ms"]
            out[f"cpu_us_{key}"] = x["cpu_us_per_reading"]
        return out
    for x in r["results"]:
        key = f"{x['scenario']}@{x['offered_per_s']:.0f}"
        out[f"p99_ms_{key}"] = x["p99_ms"]
        out[f"cpu_us_{key}"] = x["worker_cpu_us_per_reading"]
    return out


def _swap(r: dict[str, Any]) -> Figures:
    return {f"{name}_p99_ms": r[name]["p99_ms"] for name in ("steady", "swapping") if name in r} | {
        "alias_moves": r.get("swapping", {}).get("alias_moves")
    }


def _oip(r: dict[str, Any]) -> Figures:
    out: Figures = {f"{x['mode']}_readings_per_s": x["readings_per_s"] for x in r["results"]}
    return out | {"batched_over_off": _num(r.get("ratio_batched_to_off"))}


def _gateway(r: dict[str, Any]) -> Figures:
    out: Figures = {}
    for x in r["results"]:
        if x["scenario"] == "throughput":
            mode = "" if x["mode"] == "batched" else f"_{x['mode']}"
            out[f"deliveries_per_s{mode}_{x['clients']}"] = x["deliveries_per_s"]
        else:
            out[f"latency_p99_ms@{x['mode']}"] = x["p99_ms"]
    for n, ratio in r.get("batched_over_per_item", {}).items():
        out[f"batched_over_per_item_{n}"] = ratio
    return out


def _models(r: dict[str, Any]) -> Figures:
    out: Figures = {}
    for m in r["models"]:
        for variant, data in m["variants"].items():
            for p in data["points"]:
                if p["threads"] == 1 and p["batch"] == 64:
                    out[f"{m['name']}_{variant}_rows_per_s@64"] = p["rows_per_s"]
    return out


FIGURES: dict[str, Callable[[dict[str, Any]], Figures]] = {
    "models": _models,
    "pipeline": _pipeline,
    "batching": _batching,
    "swap": _swap,
    "oip": _oip,
    "gateway": _gateway,
    "e2e": _e2e,
    "rest": _rest,
}
"""Headline figures per benchmark, by name."""


def figures(name: str, report: dict[str, Any]) -> Figures:
    """The headline figures of ``report`` (a ``name`` benchmark's JSON)."""
    return FIGURES[name](report)


def lost(name: str, report: dict[str, Any]) -> int:
    """Readings (or requests, deliveries) lost, duplicated or failed in ``report``."""
    if name in ("pipeline", "batching"):
        return sum(abs(x["duplicates_or_loss"]) for x in report["results"])
    if name == "swap":
        return sum(abs(report[k]["duplicates_or_loss"]) for k in ("steady", "swapping"))
    if name == "e2e":
        return sum(x["lost"] + x["duplicates"] + x["closed_clients"] for x in report["results"])
    if name in ("rest", "oip"):
        return sum(x["errors"] for x in report["results"])
    if name == "gateway":
        return sum(x["extra"]["closed_clients"] for x in report["results"])
    return 0
