"""Drift on a worker that follows a model store (real ONNX models, a file store, no
broker): references come from the versions in the local cache, the status follows the
alias to the new version, and a version without a reference is not measured."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from bench.swap_bench import copy_as_version
from inference_worker.drift import RETIRE_AFTER, open_drift_observer
from inference_worker.drift_sink import MemoryDriftSink
from inference_worker.model_follow import following_models
from inference_worker.settings import WorkerSettings
from iot_contract import Reading
from iot_models.manifest import MANIFEST_FILE
from iot_models.sensors import make_dataset
from iot_models.store import Alias, open_store
from iot_models.store.alias import set_version
from iot_models.store.ops import change_alias


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_drift_follows_the_alias_and_skips_versions_without_reference(tmp_path: Path) -> None:
    store = open_store(tmp_path / "store")
    for version in ("1", "2", "3"):
        folder = copy_as_version(tmp_path / "builds", version)
        if version == "3":  # built before references existed
            manifest = json.loads((folder / MANIFEST_FILE).read_text())
            del manifest["reference"]
            (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
        store.publish(folder)
    store.write_alias(Alias(model="fault-clf", alias="production", version="1"), None)
    settings = WorkerSettings(
        worker_id="w-drift",
        redis_url="memory://drift-follow",
        model_store=str(tmp_path / "store"),
        models=["fault-clf"],
        default_model="fault-clf",
        model_poll_s=0.05,
        model_cache_dir=tmp_path / "cache",
        drift_min_window=200,
        drift_interval=3600,  # reports are taken by hand below
    )
    x, y = make_dataset(8000, 404)
    rows = x[y == 0]
    registry = CollectorRegistry()
    with contextlib.ExitStack() as stack:
        following = stack.enter_context(following_models(settings, registry))
        observer = stack.enter_context(open_drift_observer(settings, registry))
        assert isinstance(observer.sink, MemoryDriftSink)

        def feed(start: int, n: int = 600) -> None:
            for k in range(start, start + n, 50):
                readings = [
                    Reading(device_id=f"p-{i}", seq=i, ts=1.0, features=rows[i].tolist())
                    for i in range(k, k + 50)
                ]
                result = following.core.infer(readings, 1.0)
                observer.observe(readings, [1.0] * len(readings), result)

        def version_served() -> str:
            return following.core.current.models["fault-clf"].info.version

        def move(version: str) -> None:
            change_alias(
                store,
                "fault-clf",
                "production",
                lambda a: set_version(a, "fault-clf", "production", version, at=1.0, by="t"),
            )
            _wait_until(lambda: version_served() == version)

        feed(0, 50)
        observer.report()  # the version is looked up in the cache
        feed(50)
        observer.report()
        status = observer.sink.statuses["fault-clf"]
        assert (status.version, status.worker_id) == ("1", "w-drift")
        assert status.psi_max < 0.25
        assert not status.drifting

        move("2")
        feed(1000, 50)
        observer.report()
        feed(1050)
        observer.report()
        assert observer.sink.statuses["fault-clf"].version == "2"
        assert set(observer.monitor.tracked) == {("fault-clf", "1"), ("fault-clf", "2")}

        move("3")
        feed(2000)
        for _ in range(RETIRE_AFTER):
            feed(2000, 50)
            observer.report()
        assert observer.monitor.tracked == []  # 3 has no reference; 1 and 2 retired
        assert (
            registry.get_sample_value(
                "iotstream_worker_drift_psi_max", {"model": "fault-clf", "version": "2"}
            )
            is None
        )
        assert np.isfinite(observer.sink.statuses["fault-clf"].psi_max)
