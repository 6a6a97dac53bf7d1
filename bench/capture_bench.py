"""Capture benchmark: what capturing scored readings, and the worker's other per-batch
side tasks, cost the worker.

Prints a table and writes a JSON report (default ``bench/results/capture.json``).

hot path   ``CaptureWriter.observe()`` on batches of 64 scored readings (the real
           ``fault-clf`` model, simulator-like readings with labels), with the writer's
           flush thread running and writing Parquet to a temporary folder, as in a worker:
           microseconds per reading at each ``--rates`` (1.0 = everything). The issue's
           budget is 2 us per reading at 1.0.
observers  on the same batches: the drift observer's ``DriftMonitor.observe`` (against
           fault-clf's training reference) and the per-version metrics'
           ``ModelMetrics.count`` (one version, and the batch split 70/30 between two
           versions as under a canary): microseconds per reading.
pipeline   (``--pipeline``) the pipeline bench's saturate scenario (simulator -> Mosquitto
           -> worker -> Redis) twice in one invocation, capture off and on
           (``WORKER_CAPTURE_URL`` = a temporary folder, rate 1.0): stored readings per
           second and worker CPU per reading.

    iotstream bench capture                     # hot path only (~10 s)
    iotstream bench capture --pipeline --quick  # plus saturate off vs on (~1 min)
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from bench.cli import positive, scenario_parser
from bench.pipeline_bench import ROOT, run_scenario, write_report
from inference_worker.app import build_core
from inference_worker.settings import WorkerSettings
from iot_contract import Reading
from iot_models.capture.writer import CaptureConfig, CaptureWriter
from iot_models.core import BatchResult
from iot_models.sensors import LABELS, make_dataset
from iot_models.store.objects import FileObjectStore

BATCH = 64


def scored_batches(n_batches: int) -> list[tuple[list[Reading], list[float], BatchResult]]:
    """``n_batches`` batches of 64 readings from 1000 devices, scored by fault-clf."""
    core = build_core(
        WorkerSettings(models_dir=ROOT / "models", models=["fault-clf"], worker_id="bench")
    )
    x, y = make_dataset(n_batches * BATCH, 11)
    now = time.time()
    batches = []
    for b in range(n_batches):
        readings = [
            Reading(
                device_id=f"pump-{i % 1000}",
                boot=1,
                seq=i,
                ts=now + i * 1e-4,
                features=[float(v) for v in x[i]],
                label=LABELS[int(y[i])],
            )
            for i in range(b * BATCH, (b + 1) * BATCH)
        ]
        received = [r.ts + 0.002 for r in readings]
        batches.append((readings, received, core.infer(readings, received)))
    return batches


def hot_path(rate: float, batches: list[Any], rounds: int) -> dict[str, float]:
    """Median over ``rounds`` of the us per reading of ``observe()`` across all batches."""
    per_round: list[float] = []
    registry = CollectorRegistry()
    with tempfile.TemporaryDirectory(prefix="iotstream-capture-bench-") as tmp:
        config = CaptureConfig(rate=rate, flush_rows=10_000, flush_seconds=60.0)
        with CaptureWriter(
            FileObjectStore(Path(tmp)), config, worker_id="bench", registry=registry
        ) as writer:
            for _ in range(rounds):
                started = time.perf_counter()
                for readings, received, result in batches:
                    writer.observe(readings, received, result)
                elapsed = time.perf_counter() - started
                per_round.append(elapsed / (len(batches) * BATCH) * 1e6)
            writer.flush(timeout=60.0)
    return {
        "rate": rate,
        "us_per_reading_median": round(statistics.median(per_round), 3),
        "us_per_reading_min": round(min(per_round), 3),
        "rows_written": registry.get_sample_value("iotstream_worker_capture_rows_total") or 0.0,
        "files_written": registry.get_sample_value("iotstream_worker_capture_files_total") or 0.0,
        "bytes_per_row": round(
            (registry.get_sample_value("iotstream_worker_capture_bytes_total") or 0.0)
            / max(1.0, registry.get_sample_value("iotstream_worker_capture_rows_total") or 0.0),
            1,
        ),
    }


def _timed(call: Any, batches: list[Any], rounds: int) -> float:
    """Median over ``rounds`` of the us per reading of ``call(batch)`` across ``batches``."""
    per_round = []
    for _ in range(rounds):
        started = time.perf_counter()
        for batch in batches:
            call(batch)
        per_round.append((time.perf_counter() - started) / (len(batches) * BATCH) * 1e6)
    return round(statistics.median(per_round), 3)


def _split(result: BatchResult, share: float) -> BatchResult:
    """``result`` with the last ``share`` of its records relabelled version ``canary``."""
    cut = int(len(result.records) * (1 - share))
    records = [dict(r) for r in result.records]
    by_version: dict[tuple[str, str], int] = {}
    for i, record in enumerate(records):
        if i >= cut:
            record["model"] = {**record["model"], "version": "canary"}
        key = (record["model"]["name"], record["model"]["version"])
        by_version[key] = by_version.get(key, 0) + 1
    seconds = next(iter(result.seconds_by_version.values()), 0.0)
    return BatchResult(
        records=records,
        indices=result.indices,
        by_version=by_version,
        seconds_by_version={key: seconds for key in by_version},
    )


def observers(batches: list[Any], rounds: int) -> dict[str, float]:
    """us per reading of the drift observer and of the per-version metrics."""
    from inference_worker.drift import DriftMonitor
    from inference_worker.model_follow import ModelMetrics
    from iot_models.manifest import read_manifest

    reference = read_manifest(ROOT / "models" / "fault-clf" / "1" / "manifest.json").reference
    monitor = DriftMonitor(
        lambda _name, _version: reference,
        window=5000,
        min_window=1000,
        threshold=0.25,
        worker_id="bench",
    )
    monitor.observe(*batches[0])
    monitor.evaluate(0.0)  # the version is tracked from here on, as in a running worker
    metrics = ModelMetrics(CollectorRegistry())
    split = [_split(result, 0.3) for _r, _t, result in batches]
    return {
        "drift_observe_us": _timed(lambda b: monitor.observe(*b), batches, rounds),
        "version_metrics_us": _timed(lambda b: metrics.count(b[2]), batches, rounds),
        "version_metrics_canary_us": _timed(metrics.count, split, rounds),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the measurements and write the report."""
    parser = scenario_parser("capture", __doc__)
    parser.add_argument("--rates", default="1.0,0.1", help="capture rates of the hot path")
    parser.add_argument("--batches", type=int, default=500, help="64-reading batches per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (the median is kept)")
    parser.add_argument("--pipeline", action="store_true", help="also saturate off vs on")
    parser.add_argument("--quick", action="store_true", help="pipeline: 4 s per run")
    parser.add_argument(
        "--seconds", type=positive(float), default=10.0, help="pipeline: load per run"
    )
    parser.add_argument("--saturate-rate", type=float, default=30000, help="offered load")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "capture.json")
    args = parser.parse_args(argv)

    batches = scored_batches(args.batches)
    hot = [hot_path(float(r), batches, args.rounds) for r in args.rates.split(",")]
    print(f"{'rate':>5} {'us/reading':>10} {'min':>6} {'rows':>8} {'files':>5} {'B/row':>6}")
    for h in hot:
        print(
            f"{h['rate']:>5} {h['us_per_reading_median']:>10.3f} {h['us_per_reading_min']:>6.3f}"
            f" {h['rows_written']:>8.0f} {h['files_written']:>5.0f} {h['bytes_per_row']:>6.1f}"
        )
    side = observers(batches, args.rounds)
    print(
        f"\ndrift observe {side['drift_observe_us']:.3f} us/reading | per-version metrics "
        f"{side['version_metrics_us']:.3f} (one version), "
        f"{side['version_metrics_canary_us']:.3f} (70/30 canary split)"
    )
    figures: dict[str, Any] = {"batch": BATCH, "hot_path": hot, "observers": side}

    if args.pipeline:
        seconds = 4.0 if args.quick else args.seconds
        runs = []
        with tempfile.TemporaryDirectory(prefix="iotstream-bench-") as tmp:
            for label, env in (
                ("off", {}),
                ("on", {"WORKER_CAPTURE_URL": str(Path(tmp) / "capture")}),
            ):
                result = run_scenario(
                    "saturate",
                    rate=args.saturate_rate,
                    seconds=seconds,
                    protocol="5",
                    max_batch=64,
                    work=Path(tmp) / f"saturate-capture-{label}",
                    inflight=256,
                    worker_env=env,
                )
                runs.append({"capture": label, **asdict(result)})
        print(f"\n{'capture':<7} {'stored/s':>9} {'cpu us/r':>8} {'loss':>5}")
        for run in runs:
            print(
                f"{run['capture']:<7} {run['stored_per_s']:>9.0f} "
                f"{run['worker_cpu_us_per_reading']:>8.1f} {run['duplicates_or_loss']:>5}"
            )
        figures["pipeline_saturate"] = runs
    write_report(args.out, figures)
    return 0
