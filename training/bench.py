"""``iotstream models bench``: fp32 vs each int8 variant on this machine.

Measures, per model, variant, intra-op thread count and batch size, the wall time of
``session.run`` on rows of the test split (same seed as the build), and reports rows/s,
per-call latency (p50, p99) and the speed ratio to fp32 in the same run. Sizes and accuracy
deltas come from the manifest (measured by the build on the same test split). Needs only
onnxruntime and numpy.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from iot_models.manifest import Manifest, find_manifests, read_manifest
from iot_models.sensors import make_dataset
from iot_models.variants import VNNI_FLAGS, cpu_flags, current_platform
from training.data import SEEDS

__all__ = ["BenchConfig", "markdown", "run_bench"]


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """What to measure."""

    batches: tuple[int, ...] = (1, 8, 64, 256, 1024)
    threads: tuple[int, ...] = (1, 2)
    min_time_s: float = 0.6
    rounds: int = 3
    names: tuple[str, ...] | None = None


def _session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _time_calls(
    session: ort.InferenceSession, name: str, x: npt.NDArray[np.float32], seconds: float
) -> list[float]:
    feed = {name: x}
    session.run(None, feed)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    return times


def _interleaved(
    sessions: dict[str, ort.InferenceSession],
    name: str,
    x: npt.NDArray[np.float32],
    cfg: BenchConfig,
) -> dict[str, npt.NDArray[np.float64]]:
    """Per-call times of every variant, measured in alternating rounds.

    Alternating spreads any slow period of a shared machine over all variants, so the
    ratios stay fair even when the absolute figures wobble.
    """
    times: dict[str, list[float]] = {v: [] for v in sessions}
    for _ in range(cfg.rounds):
        for variant, session in sessions.items():
            times[variant] += _time_calls(session, name, x, cfg.min_time_s / cfg.rounds)
    return {v: np.array(t) for v, t in times.items()}


def _machine() -> dict[str, Any]:
    model_name = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "machine": platform.machine(),
        "cpu": model_name,
        "platform_key": current_platform(),
        "vnni_flags": sorted(VNNI_FLAGS & cpu_flags()),
        "onnxruntime": ort.__version__,
        "python": platform.python_version(),
    }


def _bench_model(
    manifest: Manifest, directory: Path, x_all: npt.NDArray[np.float32], cfg: BenchConfig
) -> dict[str, Any]:
    fp32_size = manifest.variants["fp32"].size_bytes
    points: dict[str, list[dict[str, Any]]] = {v: [] for v in manifest.variants}
    for threads in cfg.threads:
        sessions = {v: _session(directory / e.file, threads) for v, e in manifest.variants.items()}
        for batch in cfg.batches:
            timed = _interleaved(sessions, manifest.input.name, x_all[:batch], cfg)
            for variant, times in timed.items():
                p50 = float(np.percentile(times, 50))
                points[variant].append(
                    {
                        "threads": threads,
                        "batch": batch,
                        "calls": len(times),
                        "p50_us": round(p50 * 1e6, 2),
                        "p99_us": round(float(np.percentile(times, 99)) * 1e6, 2),
                        "rows_per_s": round(batch / p50, 1),
                    }
                )
    variants: dict[str, Any] = {}
    for variant, entry in manifest.variants.items():
        acc = entry.accuracy
        variants[variant] = {
            "size_bytes": entry.size_bytes,
            "size_ratio_fp32_over_this": round(fp32_size / entry.size_bytes, 3),
            "macro_f1": acc.macro_f1,
            "macro_f1_delta_points": acc.macro_f1_delta_points,
            "auc_delta_points": acc.auc_delta_points,
            "agreement_with_fp32": acc.agreement_with_fp32,
            "points": points[variant],
        }
    base = {(p["threads"], p["batch"]): p["rows_per_s"] for p in variants["fp32"]["points"]}
    for data in variants.values():
        for p in data["points"]:
            p["speedup_vs_fp32"] = round(p["rows_per_s"] / base[(p["threads"], p["batch"])], 3)
    best = max(
        variants,
        key=lambda v: next(
            p["rows_per_s"]
            for p in variants[v]["points"]
            if p["threads"] == cfg.threads[0]
            and p["batch"] == (64 if 64 in cfg.batches else cfg.batches[-1])
        ),
    )
    return {
        "name": manifest.name,
        "version": manifest.version,
        "kind": manifest.output.kind,
        "description": manifest.description,
        "fastest_at_batch_64": best,
        "manifest_defaults": {k: d.variant for k, d in manifest.defaults.items()},
        "variants": variants,
    }


def run_bench(root: Path, cfg: BenchConfig) -> dict[str, Any]:
    """Benchmark every (or each named) model under ``root``; returns the JSON report."""
    found = find_manifests(root)
    names = list(cfg.names) if cfg.names else list(found)
    rows = max(cfg.batches)
    x_all, _ = make_dataset(max(rows, 1024), SEEDS["test"])
    models = []
    for name in names:
        if name not in found:
            raise KeyError(f"no model {name!r} under {root}; have {sorted(found)}")
        manifest = read_manifest(found[name])
        models.append(_bench_model(manifest, found[name].parent, x_all, cfg))
    return {
        "machine": _machine(),
        "config": {
            "batches": list(cfg.batches),
            "threads": list(cfg.threads),
            "min_time_s": cfg.min_time_s,
            "timer": "wall time of InferenceSession.run, inter-op 1, sequential; variants "
            "alternate in rounds; rows/s = batch / median call time",
        },
        "models": models,
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as markdown tables: one per model, a row per variant x threads."""
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu']} ({m['machine']}, VNNI: {', '.join(m['vnni_flags']) or 'no'}), "
        f"onnxruntime {m['onnxruntime']}. Cells: rows/s, speed-up vs fp32 (same run, same "
        "threads and batch), p50 latency per call.",
        "",
    ]
    for model in report["models"]:
        batches = report["config"]["batches"]
        lines += [
            f"### {model['name']} v{model['version']} ({model['kind']})",
            "",
            "| variant | size | fp32/size | F1 loss (pts) | agreement | threads | "
            + " | ".join(f"batch {b}" for b in batches)
            + " |",
            "|---" * (6 + len(batches)) + "|",
        ]
        for variant, data in model["variants"].items():
            for threads in report["config"]["threads"]:
                cells = [
                    f"{p['rows_per_s']:,.0f}/s {p['speedup_vs_fp32']:.2f}x {p['p50_us']:,.0f}µs"
                    for p in data["points"]
                    if p["threads"] == threads
                ]
                delta = data["macro_f1_delta_points"]
                lines.append(
                    f"| {variant} | {data['size_bytes'] / 1024:.1f} KiB | "
                    f"{data['size_ratio_fp32_over_this']:.2f}x | "
                    f"{'' if delta is None else f'{delta:+.2f}'} | "
                    f"{data['agreement_with_fp32']:.4f} | {threads} | " + " | ".join(cells) + " |"
                )
        lines += [
            "",
            f"Fastest at batch 64, 1 thread: **{model['fastest_at_batch_64']}**; manifest "
            f"defaults: {model['manifest_defaults']}.",
            "",
        ]
    return "\n".join(lines)
