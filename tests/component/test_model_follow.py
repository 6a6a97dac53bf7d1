"""The worker's model follower on a file store with the real ONNX models (no broker): a
version whose file is corrupt is refused and the old one keeps serving; a canary reuses
the loaded stable version; the cache is pruned to what an alias can still need."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from bench.swap_bench import copy_as_version
from inference_worker.model_follow import following_models
from inference_worker.settings import WorkerSettings
from iot_models.store import Alias, Canary, ModelStore, open_store
from iot_models.store.alias import set_version, start_canary
from iot_models.store.ops import change_alias
from tests.harness.metrics import CATALOGUES, unexposed


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def point(store: ModelStore, version: str, canary: Canary | None = None) -> None:
    """Move the alias as the CLI does (``previous`` kept), with an optional canary."""

    def move(current: Alias | None) -> Alias:
        moved = set_version(current, "fault-clf", "production", version, at=1.0, by="test")
        return moved if canary is None else start_canary(moved, canary, at=1.0, by="test")

    change_alias(store, "fault-clf", "production", move)


def settings(tmp_path: Path) -> WorkerSettings:
    return WorkerSettings(
        worker_id="w-follow",
        model_store=str(tmp_path / "store"),
        models=["fault-clf"],
        default_model="fault-clf",
        model_poll_s=0.05,
        model_cache_dir=tmp_path / "cache",
    )


def test_a_corrupt_version_is_refused_and_the_old_one_keeps_serving(tmp_path: Path) -> None:
    store = open_store(tmp_path / "store")
    for version in ("1", "2", "3"):
        store.publish(copy_as_version(tmp_path / "builds", version))
    for onnx in (tmp_path / "store" / "fault-clf" / "2").glob("*.onnx"):
        onnx.write_bytes(b"bit rot")
    store.write_alias(Alias(model="fault-clf", alias="production", version="1"), None)
    registry = CollectorRegistry()
    with following_models(settings(tmp_path), registry) as following:

        def errors() -> float:
            text = generate_latest(registry).decode()
            line = next(
                x for x in text.splitlines() if x.startswith("worker_model_follow_errors_total")
            )
            return float(line.split()[1])

        point(store, "2")
        wait_until(lambda: errors() >= 1)
        assert unexposed(generate_latest(registry).decode(), CATALOGUES[3]) == []
        assert following.core.current.models["fault-clf"].info.version == "1"
        assert following.core.swaps == 0
        point(store, "3")
        wait_until(lambda: following.core.current.models["fault-clf"].info.version == "3")
        assert not (tmp_path / "cache" / "fault-clf" / "2").exists(), "nothing half-cached"


def test_a_canary_reuses_the_loaded_stable_version_and_the_cache_is_pruned(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "store")
    for version in ("1", "2", "3"):
        store.publish(copy_as_version(tmp_path / "builds", version))
    store.write_alias(Alias(model="fault-clf", alias="production", version="1"), None)
    with following_models(settings(tmp_path), CollectorRegistry()) as following:
        stable = following.core.current.models["fault-clf"]
        point(store, "1", Canary(version="2", percent=50))
        wait_until(lambda: "fault-clf" in following.core.current.canaries)
        assert following.core.current.models["fault-clf"] is stable, "not reloaded"
        point(store, "3")  # previous = 1: kept for a rollback; 2 is pruned
        wait_until(lambda: following.core.current.models["fault-clf"].info.version == "3")
    cached = sorted(p.name for p in (tmp_path / "cache" / "fault-clf").iterdir())
    assert cached == ["1", "3"]
