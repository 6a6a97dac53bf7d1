"""Batch-cut policies side by side: the fixed deadline and the adaptive policy at each offered
rate, on the same pipeline as ``iotstream bench pipeline`` (simulator -> Mosquitto ->
worker -> Redis on this machine, a fresh broker and Redis per run).

For each source, rate and policy: p50/p99 publish (device ts) -> Redis, worker CPU per
stored reading, stored readings per second and the mean micro-batch. The policies
alternate at each rate, so a drift of the machine hits both. The last rate is meant to
saturate the worker (stored/s below the offered rate): there the throughputs compare.

    iotstream bench batching                                   # ~4 min
    iotstream bench batching --rates 5000,10000 --seconds 4    # a quick look
    iotstream bench batching --sources mqtt,stream             # also the staged intake
    iotstream bench batching --rates 5000,10000 --repeats 3    # medians of three pairs

A run's CPU figure moves by ~5 % from one run to the next on a shared machine, as much as
the difference under study: ``--repeats N`` runs N alternating pairs per rate and adds a
summary of medians (p50, p99, CPU, and the CPU ratio of each pair) with their ranges.

Each run also splits the readings' time into parts from their records' hops (``HOPS``:
to the worker, waiting in the batch, decoding and scoring, to Redis), and says what the
slowest 1 % spent in each: what a policy can shorten (the wait) and what it cannot.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING, Any

from bench.cli import add_sources_argument, listed, one_of, positive, scenario_parser
from bench.pipeline_bench import ROOT, Result, run_scenario, stored_predictions, write_report
from bench.runner import aggregate
from inference_worker.settings import WorkerSettings

if TYPE_CHECKING:
    import redis

    from iot_contract import RedisKeys

POLICIES = ("fixed", "adaptive")
HOPS = ("to_worker", "in_batch", "decode_score", "to_redis")
"""A reading's time from its device timestamp to Redis, in four parts, from its record's
``hops``: ``to_worker`` device -> the worker's buffer (simulator, Mosquitto, the socket
read); ``in_batch`` from there to the last reading its batch took (waiting for the cut);
``decode_score`` from there to the model's output; ``to_redis`` from the output to
``published_ts`` (prediction records, the previous batch's answer; the write itself
follows that stamp)."""


def main(argv: list[str] | None = None) -> int:
    """Run every (source, rate, policy) and print one table."""
    parser = scenario_parser("batching", __doc__)
    parser.add_argument(
        "--rates",
        type=listed(positive(float)),
        default="2000,5000,10000,20000,30000",
        help="offered readings/s, comma-separated (make the last one saturate)",
    )
    parser.add_argument(
        "--policies",
        type=listed(one_of(*POLICIES)),
        default=",".join(POLICIES),
        help="fixed,adaptive",
    )
    add_sources_argument(parser, "mqtt", "mqtt and/or stream")
    parser.add_argument("--seconds", type=positive(float), default=8.0, help="load per run")
    parser.add_argument(
        "--repeats", type=positive(int), default=1, help="pairs of runs per rate (summary: medians)"
    )
    parser.add_argument("--protocol", default="5", help="worker MQTT version")
    parser.add_argument("--max-batch", type=int, default=64, help="WORKER_MAX_BATCH")
    parser.add_argument("--max-wait-ms", type=float, default=5.0, help="WORKER_MAX_WAIT_MS")
    parser.add_argument(
        "--target-wait-ms", type=float, default=1.5, help="WORKER_BATCH_TARGET_WAIT_MS"
    )
    parser.add_argument(
        "--batch-cost",
        type=float,
        default=WorkerSettings.model_fields["batch_cost_share"].default,
        help="WORKER_BATCH_COST_SHARE (adaptive: hold batches for a CPU budget; 0: off)",
    )
    parser.add_argument(
        "--cpu-budget",
        type=float,
        default=WorkerSettings.model_fields["batch_cpu_budget"].default,
        help="WORKER_BATCH_CPU_BUDGET",
    )
    parser.add_argument("--inflight", type=int, default=256, help="broker max_inflight")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "batching.json")
    args = parser.parse_args(argv)
    rates: list[float] = args.rates
    policies: list[str] = args.policies
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="iotstream-bench-") as tmp:
        for source in args.sources:
            for i, rate in enumerate(rates):
                for repeat, policy in _schedule(policies, i, args.repeats):
                    result = run_scenario(
                        policy,
                        rate=rate,
                        seconds=args.seconds,
                        protocol=args.protocol,
                        max_batch=args.max_batch,
                        work=Path(tmp) / f"{source}-{rate:.0f}-{policy}-{repeat}",
                        inflight=args.inflight,
                        source=source,
                        worker_env={
                            "WORKER_BATCH_POLICY": policy,
                            "WORKER_MAX_WAIT_MS": str(args.max_wait_ms),
                            "WORKER_BATCH_TARGET_WAIT_MS": str(args.target_wait_ms),
                            "WORKER_BATCH_COST_SHARE": str(args.batch_cost),
                            "WORKER_BATCH_CPU_BUDGET": str(args.cpu_budget),
                        },
                        inspect=_hops,
                    )
                    result.extra["repeat"] = repeat
                    results.append(result)
                    print(_row(result, _peer(results, result)), flush=True)
    print()
    _print(results)
    summary = _summary(results)
    if args.repeats > 1:
        _print_summary(summary, args.repeats)
    _print_hops(summary)
    write_report(
        args.out,
        {
            "seconds": args.seconds,
            "max_wait_ms": args.max_wait_ms,
            "target_wait_ms": args.target_wait_ms,
            "batch_cost_share": args.batch_cost,
            "cpu_budget": args.cpu_budget,
            "repeats": args.repeats,
            "fitted_batch_cost_share": _fitted(results),
            "summary": summary,
            "results": [asdict(r) for r in results],
        },
    )
    return 0


def _hops(client: redis.Redis, keys: RedisKeys) -> dict[str, Any]:
    """Where the time goes (:data:`HOPS`): each part's median over all readings, and its
    mean over the slowest 1 % (total at or above the p99), which says what the p99 is made
    of. A batch is told by its readings' shared ``inferred_ts`` (one model call)."""
    rows = [
        (p.hops.device_ts, p.hops.received_ts, p.hops.inferred_ts, p.hops.published_ts or 0.0)
        for p in stored_predictions(client, keys)
    ]
    if not rows:
        return {}
    last_in: dict[float, float] = {}
    for _dev, rec, inf, _pub in rows:
        last_in[inf] = max(last_in.get(inf, rec), rec)
    parts = [
        (rec - dev, last_in[inf] - rec, inf - last_in[inf], pub - inf)
        for dev, rec, inf, pub in rows
    ]
    totals = sorted(pub - dev for dev, _rec, _inf, pub in rows)
    p99 = totals[min(len(totals) - 1, int(0.99 * len(totals)))]
    tail = [part for part, (dev, _r, _i, pub) in zip(parts, rows, strict=True) if pub - dev >= p99]
    return {
        "hops_median_ms": {
            name: round(median(x[k] for x in parts) * 1000, 3) for k, name in enumerate(HOPS)
        },
        "hops_p99_tail_ms": {
            name: round(sum(x[k] for x in tail) / len(tail) * 1000, 3)
            for k, name in enumerate(HOPS)
        },
    }


def _fitted(results: list[Result]) -> dict[str, float]:
    """The share of the fixed policy's CPU per reading that is per-batch work, per source
    and rate (WORKER_BATCH_COST_SHARE): the worker's CPU per reading is about ``a + b /
    batch``, so the two policies' CPU and mean batch at one rate give ``b``, and the share
    is ``(b / fixed batch) / fixed CPU``. The median over the repeats' pairs; only where
    the adaptive policy's mean batch is at most 60 % of the fixed policy's (with the CPU
    budget on it is ~78 %, and the fit is then mostly noise: measure with
    ``--batch-cost 0``)."""
    shares: dict[str, list[float]] = {}
    for r in results:
        fixed = _peer(results, r)
        if r.scenario == "fixed" or fixed is None:
            continue
        n_a, n_f = r.extra["mean_batch"], fixed.extra["mean_batch"]
        if not n_a or n_a > 0.6 * n_f:
            continue
        b = (r.worker_cpu_us_per_reading - fixed.worker_cpu_us_per_reading) / (1 / n_a - 1 / n_f)
        key = f"{r.extra['source']} {r.offered_per_s:.0f}/s"
        shares.setdefault(key, []).append(b / n_f / fixed.worker_cpu_us_per_reading)
    return {key: round(median(values), 2) for key, values in shares.items()}


def _schedule(policies: list[str], i: int, repeats: int) -> list[tuple[int, str]]:
    """The runs at the ``i``-th rate: ``repeats`` pairs, the order alternating from run to
    run, so a drift of the machine hits both policies alike."""
    runs = []
    for repeat in range(repeats):
        order = policies if (i + repeat) % 2 == 0 else policies[::-1]
        runs += [(repeat, policy) for policy in order]
    return runs


def _peer(results: list[Result], r: Result) -> Result | None:
    """The fixed policy's run of the same pair (rate, source, repeat): for the CPU ratio."""
    return next(
        (
            x
            for x in results
            if x.scenario == "fixed"
            and x.offered_per_s == r.offered_per_s
            and x.extra["source"] == r.extra["source"]
            and x.extra.get("repeat", 0) == r.extra.get("repeat", 0)
        ),
        None,
    )


def _summary(results: list[Result]) -> list[dict[str, Any]]:
    """Per source, rate and policy over the repeats: the median of each figure, and of the
    CPU ratio of each pair to its fixed run, with the ranges of p99 and ratio."""
    groups: dict[tuple[str, float, str], list[Result]] = {}
    for r in results:
        groups.setdefault((r.extra["source"], r.offered_per_s, r.scenario), []).append(r)
    summary = []
    for (source, rate, policy), runs in sorted(groups.items()):
        ratios = [
            r.worker_cpu_us_per_reading / fixed.worker_cpu_us_per_reading
            for r in runs
            if (fixed := _peer(results, r)) is not None and fixed.worker_cpu_us_per_reading
        ]
        p99 = aggregate([r.p99_ms for r in runs])
        ratio = aggregate(ratios) if ratios else None
        summary.append(
            {
                "source": source,
                "offered_per_s": rate,
                "policy": policy,
                "runs": len(runs),
                "stored_per_s": median(r.stored_per_s for r in runs),
                "p50_ms": round(median(r.p50_ms for r in runs), 2),
                "p99_ms": p99["median"],
                "p99_ms_range": [p99["min"], p99["max"]],
                "cpu_us_per_reading": round(median(r.worker_cpu_us_per_reading for r in runs), 1),
                "cpu_vs_fixed": ratio["median"] if ratio else None,
                "cpu_vs_fixed_range": [ratio["min"], ratio["max"]] if ratio else None,
                "mean_batch": round(median(r.extra["mean_batch"] for r in runs), 1),
                "hops_p99_tail_ms": {
                    name: round(median(r.extra["hops_p99_tail_ms"][name] for r in runs), 2)
                    for name in HOPS
                    if all(r.extra.get("hops_p99_tail_ms") for r in runs)
                },
            }
        )
    return summary


def _print_summary(summary: list[dict[str, Any]], repeats: int) -> None:
    print(f"\nmedians of {repeats} pairs (ranges in brackets):")
    print(
        f"{'source':<6} {'offered/s':>9} {'policy':<8} {'p50 ms':>7} {'p99 ms':>16} "
        f"{'cpu us/r':>8} {'vs fixed':>19} {'batch~':>6}"
    )
    for x in summary:
        lo, hi = x["p99_ms_range"]
        ratio = (
            f"{x['cpu_vs_fixed']:.2f}x [{x['cpu_vs_fixed_range'][0]:.2f}-"
            f"{x['cpu_vs_fixed_range'][1]:.2f}]"
            if x["cpu_vs_fixed"] is not None
            else ""
        )
        print(
            f"{x['source']:<6} {x['offered_per_s']:>9.0f} {x['policy']:<8} {x['p50_ms']:>7.1f} "
            f"{x['p99_ms']:>5.1f} [{lo:.1f}-{hi:.1f}] {x['cpu_us_per_reading']:>8.1f} "
            f"{ratio:>19} {x['mean_batch']:>6.1f}"
        )


def _print_hops(summary: list[dict[str, Any]]) -> None:
    print("\nthe slowest 1 % (at or above the p99): mean ms in each part (median of the runs)")
    print(f"{'source':<6} {'offered/s':>9} {'policy':<8} " + " ".join(f"{h:>12}" for h in HOPS))
    for x in summary:
        if tail := x["hops_p99_tail_ms"]:
            print(
                f"{x['source']:<6} {x['offered_per_s']:>9.0f} {x['policy']:<8} "
                + " ".join(f"{tail[h]:>12.2f}" for h in HOPS)
            )


HEAD = (
    f"{'source':<6} {'offered/s':>9} {'policy':<8} {'stored/s':>9} {'loss':>5} "
    f"{'p50 ms':>7} {'p99 ms':>7} {'cpu us/r':>8} {'vs fixed':>8} {'batch~':>6}"
)


def _row(r: Result, fixed: Result | None) -> str:
    ratio = (
        f"{r.worker_cpu_us_per_reading / fixed.worker_cpu_us_per_reading:>7.2f}x"
        if fixed and fixed.worker_cpu_us_per_reading
        else f"{'':>8}"
    )
    return (
        f"{r.extra['source']:<6} {r.offered_per_s:>9.0f} {r.scenario:<8} "
        f"{r.stored_per_s:>9.0f} {r.duplicates_or_loss:>5} {r.p50_ms:>7.1f} {r.p99_ms:>7.1f} "
        f"{r.worker_cpu_us_per_reading:>8.1f} {ratio} {r.extra['mean_batch']:>6.1f}"
    )


def _print(results: list[Result]) -> None:
    print(HEAD)
    print("-" * len(HEAD))
    for r in sorted(results, key=lambda x: (x.extra["source"], x.offered_per_s, x.scenario)):
        print(_row(r, _peer(results, r)))
    print(
        "p50/p99: publish (device ts) -> Redis; cpu us/r: worker CPU per stored reading; "
        "vs fixed: that CPU\nover the fixed policy's at the same rate; batch~: mean "
        "micro-batch; loss: stored - published"
    )
    if fitted := _fitted(results):
        print(
            "per-batch work, as a share of the fixed policy's CPU per reading (fitted from "
            "the two policies; WORKER_BATCH_COST_SHARE):",
            ", ".join(f"{k}: {v}" for k, v in fitted.items()),
        )


if __name__ == "__main__":
    raise SystemExit(main())
