"""``iotstream bench report``: benchmark JSON runs -> one markdown page with matplotlib plots.

    iotstream bench report [FILES or FOLDERS ...] --out DIR

Reads the reports (default: the newest ``bench/results/all-*`` folder written by
``iotstream bench all``), groups the runs by scenario, and writes ``DIR/benchmarks.md``
with the PNGs under ``DIR/img/bench/``: the targets (median over the repeats, and by how
much a missed one is missed), every headline figure as median and spread (min-max), the
end-to-end latency CDF per hop, throughput and p99 against the offered rate, REST vs
streaming, batched vs per-message and fp32 vs int8 bars.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from bench.cli import scenario_parser
from bench.e2e_bench import hist_percentiles
from bench.e2e_clients import HOPS
from bench.figures import FIGURES, TARGETS, figures
from bench.runner import aggregate

__all__ = ["load_runs", "main", "target_rows", "write_report"]

ROOT = Path(__file__).resolve().parent.parent
IMG = Path("img") / "bench"
Runs = dict[str, list[dict[str, Any]]]
NOTES = {
    "gateway": "The gateway bench offers 1.2M item deliveries/s from 100 clients up (stream "
    "rate = 1.2M / clients): where everything offered is delivered, the ceiling is higher "
    "than the figure.",
    "batching": "At 30,000/s the worker is saturated (offered more than it takes): the p99 "
    "there is the backlog's, by design of that point.",
}
"""Caveats printed above a scenario's table."""
ABOUT = (
    "Reproduce: `flock /tmp/iotstream-heavy.lock iotstream bench all` (about 30 minutes; "
    "`--repeat`, `--only e2e,rest`), then `iotstream bench report --out docs`. Each "
    "scenario alone: `iotstream bench <name> --help`.",
    "",
    "- **e2e**: simulators (2 processes, 1,000 devices, QoS 1) -> Mosquitto -> one worker "
    "(MQTT 5, micro-batches of up to 64 or 5 ms) -> Redis -> gateway -> WebSocket clients "
    "(one process each, subscribed to everything). Hops: `device_worker` = device clock to "
    "the worker's receipt, `batch_infer` = waiting for the micro-batch plus inference, "
    "`worker_redis` = until the record is written, `redis_gateway` = until the gateway sends "
    "the frame (`sent_ts`), `gateway_client` = until the client has it. Loss is counted by "
    "(device, seq) at every client. CPU per 1,000 readings is per process; the simulators' "
    "includes their interpreter start-up (~0.3 s each), which dominates at low rates.",
    "- **rest**: the course-style FastAPI `POST /predict` (Pydantic body, one ONNX Runtime "
    "call per request, one uvicorn process with its defaults; this venv has neither "
    "httptools nor uvloop, so uvicorn uses h11 and asyncio) in `def` and `async def` forms, "
    "and the gateway's `/v1/predict` with 64 readings per request, each driven by 2 load "
    "processes with 32 keep-alive connections in all; against the streaming path's "
    "sustained rate (the pipeline's saturate scenario), same model, same invocation.",
    "- **pipeline**, **batching**, **swap**, **oip**, **gateway**, **models**: the existing "
    "scenarios (docs/streaming.md, docs/gateway.md, docs/models.md), with the arguments "
    "`bench/runner.py` gives them (bounded so that three repeats fit in half an hour).",
)


def _name_of(path: Path, report: dict[str, Any]) -> str | None:
    name = report.get("benchmark") or report.get("bench")
    if name is None:
        stem = path.stem.split("-")[0].removesuffix("_bench")
        name = stem if stem in FIGURES else None
    return str(name) if name in FIGURES else None


def load_runs(paths: Iterable[Path]) -> Runs:
    """Every benchmark report under ``paths`` (files, or folders of ``*.json``), by scenario."""
    runs: Runs = {}
    for path in paths:
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        for file in files:
            if file.name == "summary.json":
                continue
            report = json.loads(file.read_text())
            if (name := _name_of(file, report)) is not None:
                runs.setdefault(name, []).append(report)
    return runs


def _values(runs: list[dict[str, Any]], name: str, figure: str) -> list[float]:
    out = []
    for report in runs:
        value = figures(name, report).get(figure)
        out.append(0.0 if value is None else float(value))
    return out


def _fmt(x: float) -> str:
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}" if abs(x) < 10 else f"{x:.1f}"


def target_rows(runs: Runs) -> list[str]:
    """Markdown rows: target, measured median (min-max), verdict with the shortfall."""
    rows = ["| target | measured: median (min-max, runs) | verdict |", "| --- | --- | --- |"]
    for t in TARGETS:
        if t.scenario not in runs:
            rows.append(f"| {t.text} | not run | - |")
            continue
        agg = aggregate(_values(runs[t.scenario], t.scenario, t.figure))
        median = agg["median"]
        if median >= t.at_least:
            verdict = "met"
        else:
            short = 100 * (t.at_least - median) / t.at_least
            verdict = f"**missed by {short:.0f} %** ({_fmt(median)} vs {_fmt(t.at_least)})"
        measured = f"{_fmt(median)} ({_fmt(agg['min'])}-{_fmt(agg['max'])}, {agg['n']})"
        rows.append(f"| {t.text} | {measured} | {verdict} |")
    return rows


def _figure_table(name: str, runs: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for report in runs:
        keys += [k for k in figures(name, report) if k not in keys]
    rows = ["| figure | median | min | max | runs |", "| --- | ---: | ---: | ---: | ---: |"]
    for key in keys:
        values = [v for v in (figures(name, r).get(key) for r in runs) if v is not None]
        if not values:
            rows.append(f"| {key} | - | - | - | 0 |")
            continue
        a = aggregate([float(v) for v in values])
        rows.append(
            f"| {key} | {_fmt(a['median'])} | {_fmt(a['min'])} | {_fmt(a['max'])} | {a['n']} |"
        )
    return rows


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, Any]:
    """A headless figure (no pyplot state) and its axes (one, or a row of ``ncols``)."""
    fig = Figure(figsize=(width, height))
    return fig, fig.subplots(1, ncols) if ncols > 1 else fig.subplots()


def _save(fig: Figure, out: Path, name: str) -> str:
    (out / IMG).mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out / IMG / name, dpi=90)
    return f"![{name}]({(IMG / name).as_posix()})"


def _e2e_section(runs: list[dict[str, Any]], out: Path) -> list[str]:
    rates = sorted({x["offered_per_s"] for r in runs for x in r["results"]})
    by_rate = {
        rate: [x for r in runs for x in r["results"] if x["offered_per_s"] == rate]
        for rate in rates
    }
    best = [r["best_rate_per_s"] for r in runs if r.get("best_rate_per_s")]
    shown = statistics.median_low(best) if best else rates[-1]
    lines = [f"Latency per hop at {shown:,.0f} readings/s (all runs' clients merged):", ""]
    fig, ax = _figure(7, 4)
    for hop in (*HOPS, "total"):
        merged: dict[int, int] = {}
        for x in by_rate[shown]:
            for k, n in x["hist_0_1ms"][hop].items():
                merged[int(k)] = merged.get(int(k), 0) + n
        keys = sorted(merged)
        total = sum(merged.values()) or 1
        acc, ys = 0, []
        for k in keys:
            acc += merged[k]
            ys.append(acc / total)
        ax.plot([max(k / 10, 0.05) for k in keys], ys, label=hop, lw=2 if hop == "total" else 1)
    ax.set_xscale("log")
    ax.set_xlabel("ms")
    ax.set_ylabel("fraction of readings")
    ax.set_title(f"e2e latency CDF per hop, {shown:,.0f} readings/s")
    ax.axvline(30, color="grey", ls=":")
    ax.legend(fontsize=8)
    lines += [_save(fig, out, "e2e_latency_cdf.png"), ""]
    fig, (a1, a2) = _figure(9, 3.6, 2)
    for ax, key, label in (
        (a1, "delivered", "delivered readings/s"),
        (a2, "p99", "p99 device -> client, ms"),
    ):
        meds, lows, highs = [], [], []
        for rate in rates:
            vals = [
                x["delivered_per_s"] if key == "delivered" else x["latency_ms"]["total"]["p99"]
                for x in by_rate[rate]
            ]
            med = statistics.median(vals)
            meds.append(med)
            lows.append(med - min(vals))
            highs.append(max(vals) - med)
        ax.errorbar(rates, meds, yerr=[lows, highs], marker="o", capsize=3)
        ax.set_xlabel("offered readings/s")
        ax.set_ylabel(label)
    a1.plot(rates, rates, color="grey", ls=":", label="offered")
    a2.axhline(30, color="red", ls=":", label="30 ms target")
    a2.legend(fontsize=8)
    lines += [_save(fig, out, "e2e_rate.png"), ""]
    lines += ["p50 / p95 / p99 / max per hop, ms (median over runs):", ""]
    lines += [
        "| offered/s | " + " | ".join((*HOPS, "total")) + " | lost | CPU s per 1,000 readings |"
    ]
    lines += ["| ---: |" + " --- |" * (len(HOPS) + 3)]
    for rate in rates:
        cells = []
        for hop in (*HOPS, "total"):
            p = [hist_percentiles(x["hist_0_1ms"][hop]) for x in by_rate[rate]]
            cells.append(
                " / ".join(
                    _fmt(statistics.median(q[k] for q in p)) for k in ("p50", "p95", "p99", "max")
                )
            )
        cpu_keys = by_rate[rate][0]["cpu_s_per_1k"]
        cpu = ", ".join(
            f"{k} {statistics.median(x['cpu_s_per_1k'][k] for x in by_rate[rate]):.3f}"
            for k in cpu_keys
        )
        lost = sum(x["lost"] + x["duplicates"] for x in by_rate[rate])
        lines.append(f"| {rate:,.0f} | " + " | ".join(cells) + f" | {lost} | {cpu} |")
    lines += [
        "",
        "Highest passing rate per run: "
        + ", ".join(f"{r.get('best_rate_per_s')} ({r.get('found_by')})" for r in runs)
        + ".",
        "",
    ]
    return lines


def _bars(ax: Any, labels: list[str], groups: list[list[float]], title: str) -> None:
    meds = [statistics.median(g) if g else 0.0 for g in groups]
    err = [
        [m - min(g) if g else 0 for m, g in zip(meds, groups, strict=True)],
        [max(g) - m if g else 0 for m, g in zip(meds, groups, strict=True)],
    ]
    ax.bar(
        labels,
        meds,
        yerr=err,
        capsize=3,
        color=["#4c72b0", "#999999"]
        if len(labels) == 2
        else ["#bbbbbb", "#999999", "#4c72b0", "#55a868"],
    )
    if len(labels) == 2 and meds[1]:
        title += f" ({meds[0] / meds[1]:.1f}x)"
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", labelsize=8)


def _rest_section(runs: list[dict[str, Any]], out: Path) -> list[str]:
    names = ["def", "async", "gateway", "streaming"]
    per = {n: [x for r in runs for x in r["results"] if x["name"] == n] for n in names}
    fig, (a1, a2) = _figure(9, 3.6, 2)
    _bars(a1, names, [[x["readings_per_s"] for x in per[n]] for n in names], "readings/s")
    _bars(
        a2,
        names,
        [[x["server_cpu_us_per_reading"] for x in per[n]] for n in names],
        "server CPU µs per reading",
    )
    lines = [_save(fig, out, "rest_vs_streaming.png"), ""]
    ratios = {k: statistics.median(r["ratios"][k] for r in runs) for k in runs[0]["ratios"]}
    lines.append("Ratios (median): " + ", ".join(f"{k} {v:.1f}x" for k, v in ratios.items()) + ".")
    lines.append(
        "`gateway` is `/v1/predict` with "
        f"{runs[0]['params']['gateway_batch']} readings per request; `streaming` is the "
        "pipeline's saturate scenario (its CPU is the worker's)."
    )
    return [*lines, ""]


_Panel = tuple[str, list[str], list[list[float]]]
"""A chart panel: title, legend, one bar group per legend entry."""


def _panel(runs: Runs, name: str, title: str, series: dict[str, str]) -> _Panel:
    """Bars of benchmark ``name`` over its runs, one group per ``{legend: figure}``."""
    return title, list(series), [_values(runs[name], name, f) for f in series.values()]


def _batched_section(runs: Runs, out: Path) -> list[str]:
    panels: list[_Panel] = []
    if "pipeline" in runs:
        series = {
            "micro-batched": "saturate_readings_per_s",
            "per-message": "per_message_readings_per_s",
        }
        panels.append(_panel(runs, "pipeline", "worker: readings/s", series))
    if "gateway" in runs:
        rs = runs["gateway"]
        n = max(
            (x["clients"] for r in rs for x in r["results"] if x["scenario"] == "throughput"),
            default=0,
        )
        series = {"batched": f"deliveries_per_s_{n}", "per-item": f"deliveries_per_s_per-item_{n}"}
        panels.append(_panel(runs, "gateway", f"gateway: deliveries/s, {n} clients", series))
    if "oip" in runs:
        series = {"batched": "batched_readings_per_s", "off": "off_readings_per_s"}
        panels.append(_panel(runs, "oip", "OIP gRPC: readings/s", series))
    if not panels:
        return []
    fig = Figure(figsize=(3.3 * len(panels), 3.4))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (title, labels, groups) in zip(axes[0], panels, strict=True):
        _bars(ax, labels, groups, title)
    return ["## Batched vs per-message", "", _save(fig, out, "batched_vs_per_message.png"), ""]


def _models_section(runs: list[dict[str, Any]], out: Path) -> list[str]:
    found = [figures("models", r) for r in runs]
    pairs = [k.removesuffix("_rows_per_s@64").split("_", 1) for k in found[0]]
    models = list(dict.fromkeys(m for m, _ in pairs))
    variants = list(dict.fromkeys(v for _, v in pairs))
    fig, ax = _figure(8, 3.6)
    width = 0.8 / len(variants)
    for i, variant in enumerate(variants):
        key = "{}_" + variant + "_rows_per_s@64"
        meds = [statistics.median(f.get(key.format(m)) or 0 for f in found) for m in models]
        ax.bar([x + i * width for x in range(len(models))], meds, width, label=variant)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(models))], models)
    ax.set_yscale("log")
    ax.set_ylabel("rows/s, batch 64, 1 thread")
    ax.legend(fontsize=8)
    title = "## fp32 vs int8 (`iotstream models bench`)"
    return [title, "", _save(fig, out, "models_fp32_int8.png"), ""]


def write_report(runs: Runs, out: Path, sources: list[str]) -> Path:
    """Write ``out/benchmarks.md`` and its PNGs; returns the page's path."""
    first = next(iter(runs.values()))[0]
    m = first.get("machine", {})
    whens = sorted(
        str(r["machine"]["when"])
        for v in runs.values()
        for r in v
        if "when" in r.get("machine", {})
    )
    period = f"{whens[0]} to {whens[-1]}" if whens else "?"
    repeats = max(len(v) for v in runs.values())
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `iotstream bench report` from {', '.join(sources)} "
        f"(`iotstream bench all`, {repeats} run(s) per scenario: median and min-max spread).",
        "",
        f"Machine: {m.get('cpu', '?')}, {m.get('cores', m.get('cpu_count', '?'))} cores, "
        f"ISA {' '.join(m.get('isa_flags', [])) or '?'}; Python {m.get('python', '?')}, "
        f"onnxruntime {m.get('onnxruntime', '?')}, numpy {m.get('numpy', '?')}, redis-py "
        f"{m.get('redis_py', '?')}, Redis {m.get('redis_server', '?')}, Mosquitto "
        f"{m.get('mosquitto', '?')}. Runs from {period}, load average at the start "
        f"{m.get('loadavg', '?')}.",
        "",
        "Everything (load generators included) runs on this one machine. On a shared 2-core "
        "VM the figures are noisy: read the spread, and compare ratios measured in the same "
        "run rather than absolute figures across runs.",
        "",
        *ABOUT,
        "",
        "## Targets (issue #15)",
        "",
        *target_rows(runs),
        "",
    ]
    if "e2e" in runs:
        lines += ["## End to end: device -> WebSocket client (`iotstream bench e2e`)", ""]
        lines += _e2e_section(runs["e2e"], out)
    if "rest" in runs:
        lines += ["## REST baseline vs streaming (`iotstream bench rest`)", ""]
        lines += _rest_section(runs["rest"], out)
    lines += _batched_section(runs, out)
    if "models" in runs:
        lines += _models_section(runs["models"], out)
    lines += ["## Every headline figure", ""]
    for name in FIGURES:
        if name in runs:
            note = [NOTES[name], ""] if name in NOTES else []
            lines += [f"### {name}", "", *note, *_figure_table(name, runs[name]), ""]
    page = out / "benchmarks.md"
    out.mkdir(parents=True, exist_ok=True)
    page.write_text("\n".join(lines))
    return page


def _newest_results() -> Path | None:
    folders = sorted((ROOT / "bench" / "results").glob("all-*"))
    return folders[-1] if folders else None


def main(argv: list[str] | None = None) -> int:
    """Read the runs, write the page, say where."""
    parser = scenario_parser("report", __doc__)
    parser.add_argument("paths", nargs="*", type=Path, help="JSON files or folders of them")
    parser.add_argument("--out", type=Path, required=True, help="folder for benchmarks.md")
    args = parser.parse_args(argv)
    paths = args.paths or [p for p in (_newest_results(),) if p is not None]
    if missing := [str(p) for p in paths if not p.exists()]:
        print(f"iotstream bench report: no such file or folder: {', '.join(missing)}")
        return 2
    runs = load_runs(paths)
    if not runs:
        print(f"iotstream bench report: no benchmark reports in {paths}")
        return 2
    sources = [
        p.resolve().relative_to(ROOT).as_posix() if p.resolve().is_relative_to(ROOT) else p.name
        for p in paths
    ]
    page = write_report(runs, args.out, sources)
    print(f"report: {page} ({', '.join(f'{k} x{len(v)}' for k, v in runs.items())})")
    return 0
