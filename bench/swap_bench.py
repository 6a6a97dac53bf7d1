"""Model swap benchmark: what moving the alias costs a worker under load.

Two runs of the pipeline benchmark's latency scenario (simulator -> Mosquitto -> worker ->
Redis, fixed offered rate) with the worker following a file model store
(``WORKER_MODEL_STORE``): ``steady`` leaves the alias alone, ``swapping`` moves it between
two versions every ``--every`` seconds while the load runs. Reported per run: readings
published / stored (loss or duplicates would show), p50/p99/max publish -> Redis latency
overall and for readings stored within a second after each swap, the swaps seen in the
stream (a version change in stream order), and the predictions per version.

    iotstream bench swap                 # 5,000 readings/s, 16 s per run, a swap every 2 s
    iotstream bench swap --quick         # 8 s per run
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import redis

from bench.cli import positive
from bench.pipeline_bench import ROOT, _percentiles, run_scenario, stored_predictions, write_report
from iot_contract import RedisKeys
from iot_models.manifest import MANIFEST_FILE
from iot_models.store import Alias, open_store
from iot_models.store.alias import set_version
from iot_models.store.ops import change_alias

ALIAS = "production"


def copy_as_version(dest_root: Path, version: str, model: str = "fault-clf") -> Path:
    """``dest_root/<model>/<version>/``: the committed version 1 of ``model`` relabelled
    ``version`` (same files, same outputs: only the version in the predictions differs)."""
    source = ROOT / "models" / model / "1"
    folder = dest_root / model / version
    folder.mkdir(parents=True)
    for path in source.glob("*.onnx"):
        shutil.copyfile(path, folder / path.name)
    manifest = json.loads((source / MANIFEST_FILE).read_text())
    manifest["version"] = version
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def _publish_versions(store_root: Path, model: str, work: Path) -> None:
    """Versions 1 and 2 of ``model`` published, the alias at 1."""
    store = open_store(store_root)
    store.ensure()
    for version in ("1", "2"):
        store.publish(copy_as_version(work / "builds", version, model))
    store.write_alias(Alias(model=model, alias=ALIAS, version="1"), None)


def _toggle(
    store_root: Path, model: str, ready_log: Path, every: float, seconds: float
) -> list[float]:
    """Once the load has started (the simulators say so in their logs, beside the worker's
    ``ready_log``), move the alias between 1 and 2 every ``every`` s, the last move a
    whole ``every`` before the load's ``seconds`` end, so that each move has time to show
    in the stream; returns when each move was written."""
    deadline = time.monotonic() + 120
    while not (ready_log.exists() and "ready: consuming" in ready_log.read_text()):
        if time.monotonic() > deadline:
            return []
        time.sleep(0.05)
    while not any(
        "simulating" in log.read_text() for log in ready_log.parent.glob("sim*.log")
    ):  # the simulators' interpreters start after the worker is ready
        if time.monotonic() > deadline:
            return []
        time.sleep(0.05)
    store = open_store(store_root)
    moves: list[float] = []
    version, end = "1", time.monotonic() + seconds - every
    while time.monotonic() + every < end:
        time.sleep(every)
        version = "2" if version == "1" else "1"

        def point(current: Alias | None, to: str = version) -> Alias:
            return set_version(current, model, ALIAS, to, at=time.time(), by="bench")

        change_alias(store, model, ALIAS, point)
        moves.append(time.time())
    return moves


def _swap_figures(client: redis.Redis, keys: RedisKeys) -> dict[str, Any]:
    """Swaps seen in the stream, predictions per version, and the latency of readings
    stored within a second after a swap."""
    records: list[tuple[float, float, str]] = []  # (published_ts, latency ms, version)
    for p in stored_predictions(client, keys):
        published = p.hops.published_ts or 0.0
        records.append((published, (published - p.hops.device_ts) * 1000, p.model.version))
    swaps = [records[i][0] for i in range(1, len(records)) if records[i][2] != records[i - 1][2]]
    after = [lat for ts, lat, _v in records if any(0 <= ts - s < 1.0 for s in swaps)]
    p50, p99, worst = _percentiles(after)
    return {
        "swaps_in_stream": len(swaps),
        "per_version": dict(Counter(v for _ts, _lat, v in records)),
        "after_swap_readings": len(after),
        "after_swap_p50_ms": p50,
        "after_swap_p99_ms": p99,
        "after_swap_max_ms": worst,
    }


def run(
    name: str, *, swap_every: float | None, model: str, rate: float, seconds: float, work: Path
) -> dict[str, Any]:
    """One run; ``swap_every`` None leaves the alias alone."""
    store_root = work / "store"
    _publish_versions(store_root, model, work)
    env = {
        "WORKER_MODEL_STORE": str(store_root),
        "WORKER_MODEL_POLL_S": "0.5",
        "WORKER_MODEL_CACHE_DIR": str(work / "cache"),
        "WORKER_MODELS": model,
        "WORKER_DEFAULT_MODEL": model,
    }
    moves: list[float] = []
    toggler = None
    if swap_every is not None:
        ready_log = work / "run" / "worker.log"
        toggler = threading.Thread(
            target=lambda: moves.extend(_toggle(store_root, model, ready_log, swap_every, seconds)),
            daemon=True,
        )
        toggler.start()
    result = run_scenario(
        name,
        rate=rate,
        seconds=seconds,
        protocol="5",
        max_batch=64,
        work=work / "run",
        inflight=1000,
        worker_env=env,
        inspect=_swap_figures,
    )
    if toggler is not None:
        toggler.join(10)
    return {**asdict(result), "alias_moves": len(moves)}


def main(argv: list[str] | None = None) -> int:
    """Run ``steady`` and ``swapping`` and write the report."""
    parser = argparse.ArgumentParser(prog="iotstream bench swap", description=__doc__)
    parser.add_argument("--rate", type=float, default=5000.0, help="offered readings/s")
    parser.add_argument("--seconds", type=positive(float), default=16.0, help="load per run")
    parser.add_argument("--every", type=float, default=2.0, help="seconds between alias moves")
    parser.add_argument("--model", default="fault-clf-large", help="model to swap")
    parser.add_argument("--quick", action="store_true", help="8 s per run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "swap.json")
    args = parser.parse_args(argv)
    seconds = 8.0 if args.quick else args.seconds
    report: dict[str, Any] = {"rate": args.rate, "seconds": seconds, "model": args.model}
    work = Path(tempfile.mkdtemp(prefix="iotstream-swap-bench-"))
    try:
        for name, every in (("steady", None), ("swapping", args.every)):
            report[name] = run(
                name,
                swap_every=every,
                model=args.model,
                rate=args.rate,
                seconds=seconds,
                work=work / name,
            )
            _print(name, report[name])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_report(args.out, report)
    return 0


def _print(name: str, result: dict[str, Any]) -> None:
    r = {**result, **result["extra"]}
    print(
        f"{name:<9} published {r['published']:>7} stored {r['stored']:>7} "
        f"(diff {r['duplicates_or_loss']:+d}) | p50 {r['p50_ms']} p99 {r['p99_ms']} "
        f"max {r['max_ms']} ms | alias moves {r['alias_moves']}, swaps in stream "
        f"{r['swaps_in_stream']}, per version {r['per_version']} | after a swap (1 s): "
        f"{r['after_swap_readings']} readings, p50 {r['after_swap_p50_ms']} "
        f"p99 {r['after_swap_p99_ms']} max {r['after_swap_max_ms']} ms",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
