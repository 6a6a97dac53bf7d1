"""The drift watcher against a real Redis: drift events appended to the deployment's stream
start one retraining per model per cooldown; malformed entries and "stopped drifting"
events start none; ``retrain-on-drift --local`` runs the pipeline to a canary."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import redis

from iot_contract import RECORD_FIELD, DriftEvent, RedisKeys
from iot_models.store import open_store
from iotstream.cli import main
from tests.harness.retrain import MODEL, capture_readings, store_with_production
from training.drift_trigger import DriftDebouncer, watch_drift


def event(model: str, *, drifting: bool = True, worker: str = "w-0") -> bytes:
    return (
        DriftEvent(
            model=model,
            version="1",
            ts=time.time(),
            drifting=drifting,
            psi_max=0.5,
            threshold=0.25,
            feature="motor_temp_c",
            worker_id=worker,
        )
        .model_dump_json()
        .encode()
    )


def until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the deadline")
        time.sleep(0.02)


def test_events_trigger_once_per_model_per_cooldown(
    rclient: redis.Redis, redis_keys: RedisKeys
) -> None:
    stream = redis_keys.drift_events
    rclient.xadd(stream, {RECORD_FIELD: event("fault-clf")})  # before the watch: not replayed
    started: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(
        target=watch_drift,
        args=(rclient, redis_keys, DriftDebouncer(3600.0), lambda e: started.append(e.model)),
        kwargs={"stop": stop, "clock": time.monotonic, "block_ms": 100},
        daemon=True,
    )
    watcher.start()
    try:
        time.sleep(0.3)  # the watcher has resolved "$"
        rclient.xadd(stream, {RECORD_FIELD: b"not json"})
        rclient.xadd(stream, {RECORD_FIELD: event("fault-clf", drifting=False)})
        for worker in ("w-0", "w-1", "w-2"):  # every worker raises the same drift
            rclient.xadd(stream, {RECORD_FIELD: event("fault-clf", worker=worker)})
        rclient.xadd(stream, {RECORD_FIELD: event("vib-ae")})
        until(lambda: len(started) >= 2)
        time.sleep(0.3)
        assert started == ["fault-clf", "vib-ae"]
    finally:
        stop.set()
        watcher.join(timeout=5)
    assert not watcher.is_alive()


def test_retrain_on_drift_local_runs_the_pipeline_to_a_canary(
    rclient: redis.Redis, redis_service: object, redis_keys: RedisKeys, tmp_path: Path
) -> None:
    capture_readings(tmp_path / "capture", 200)
    store_with_production(tmp_path / "store")
    args = [
        *("models", "retrain-on-drift", "--local", "--redis", redis_service.url),  # type: ignore[attr-defined]
        *("--prefix", redis_keys.prefix, "--max-runs", "1", "--runs-dir", str(tmp_path / "runs")),
        *("--store", str(tmp_path / "store"), "--capture", str(tmp_path / "capture")),
        *("--min-rows", "3000", "--parity", "off", "--canary-percent", "5"),
    ]
    code: list[int] = []
    runner = threading.Thread(target=lambda: code.append(main(args)), daemon=True)
    runner.start()
    # The watcher reads from the newest entry on, once its imports are done: repeat the
    # event until a run starts (the cooldown turns the repeats into one run).
    deadline = time.monotonic() + 30
    while not (tmp_path / "runs").exists() and runner.is_alive():
        assert time.monotonic() < deadline, "no run started within 30 s"
        rclient.xadd(redis_keys.drift_events, {RECORD_FIELD: event(MODEL)})
        time.sleep(0.3)
    runner.join(timeout=120)
    assert code == [0]
    store = open_store(tmp_path / "store")
    alias = store.read_alias(MODEL, "production").alias
    assert alias.version == "1"
    assert alias.canary is not None and (alias.canary.version, alias.canary.percent) == ("2", 5.0)
