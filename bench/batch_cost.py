"""What one micro-batch costs the worker's CPU, apart from its readings (issue #20).

The worker's CPU per reading is about ``a + b / batch``: ``a`` per reading, ``b`` per batch.
A batch-cut policy that makes smaller batches pays ``b`` more often, so ``b`` decides how
much lower latency costs. This bench measures ``b`` for the two per-batch steps on the
run loop's thread, scoring (``InferenceCore.infer``, the bundled ``fault-clf``) and storing
(``RedisSink.write``, one EVALSHA round trip to a real Redis started here), by timing the
calling thread's CPU (``time.thread_time``) over batch sizes 1..64 and fitting a line,
and does so three ways: back to back, and with the thread asleep for 2 ms and 5 ms before
each batch, as the run loop is between batches at moderate rates. The difference is what
a thread pays for having slept (caches and predictors cold, a vCPU handed back): the
same call costs more CPU after a sleep.

    iotstream bench batch-cost                  # 1,000 batches per point
    iotstream bench batch-cost --batches 200    # quicker, noisier
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import redis

from bench.cli import scenario_parser
from bench.pipeline_bench import ROOT, write_report
from inference_worker.app import build_core
from inference_worker.redis_sink import RedisSink
from inference_worker.settings import WorkerSettings
from iot_contract import Reading, RedisKeys
from iot_models.sensors import make_dataset
from iotstream.localservices import RedisProcess

SIZES = (1, 8, 32, 64)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, write the report."""
    parser = scenario_parser("batch-cost", __doc__)
    parser.add_argument("--batches", type=int, default=1000, help="batches per point")
    parser.add_argument("--gaps-ms", default="0,2,5", help="sleep before each batch, ms")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "batch_cost.json")
    args = parser.parse_args(argv)
    gaps = [float(g) / 1000 for g in args.gaps_ms.split(",")]
    settings = WorkerSettings(models_dir=ROOT / "models", models=["fault-clf"], worker_id="b")
    core = build_core(settings)
    x, _ = make_dataset(4096, seed=3)
    rows: list[dict[str, float | int]] = []
    with (
        tempfile.TemporaryDirectory(prefix="iotstream-bench-") as tmp,
        RedisProcess(Path(tmp) / "rd") as rd,
    ):
        client = redis.Redis.from_url(rd.url)
        sink = RedisSink(client, RedisKeys("batch-cost"))
        seq = 0
        for gap in gaps:
            for size in SIZES:
                infer_cpu = store_cpu = 0.0
                for _ in range(args.batches):
                    batch = []
                    for k in range(size):
                        seq += 1
                        features = [float(v) for v in x[seq % len(x)]]
                        batch.append(
                            Reading(device_id=f"d{k}", seq=seq, ts=1.7e9, features=features)
                        )
                    if gap:
                        time.sleep(gap)
                    t0 = time.thread_time()
                    result = core.infer(batch, time.time())
                    t1 = time.thread_time()
                    sink.write(result.records, [], time.time())
                    t2 = time.thread_time()
                    infer_cpu += t1 - t0
                    store_cpu += t2 - t1
                rows.append(
                    {
                        "gap_ms": gap * 1000,
                        "batch": size,
                        "infer_us": round(infer_cpu / args.batches * 1e6, 1),
                        "store_us": round(store_cpu / args.batches * 1e6, 1),
                    }
                )
        client.close()
    fits = []
    print(f"{'gap ms':>6} {'step':<6} {'us/batch (b)':>12} {'us/reading (a)':>14}  per size")
    for gap in gaps:
        for step in ("infer", "store"):
            points = [r for r in rows if r["gap_ms"] == gap * 1000]
            slope, intercept = np.polyfit(
                [float(r["batch"]) for r in points], [float(r[f"{step}_us"]) for r in points], 1
            )
            fits.append(
                {
                    "gap_ms": gap * 1000,
                    "step": step,
                    "per_batch_us": round(float(intercept), 1),
                    "per_reading_us": round(float(slope), 2),
                }
            )
            sizes = " ".join(f"{r['batch']}:{r[f'{step}_us']}" for r in points)
            print(f"{gap * 1000:>6.0f} {step:<6} {intercept:>12.1f} {slope:>14.2f}  {sizes}")
    write_report(args.out, {"batches": args.batches, "points": rows, "fits": fits})
    return 0
