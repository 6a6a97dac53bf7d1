"""A device that restarts (``seq`` back at 0) is not silenced: deduplication keys on
``(device_id, boot, seq)``, and readings without a boot id on ``(device_id, seq, ts)``,
while broker redeliveries are still absorbed. Real Mosquitto and Redis."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
import redis

from device_sim.app import run as run_sim
from device_sim.settings import SimSettings
from inference_worker.app import running_worker
from inference_worker.metrics import WorkerMetrics
from inference_worker.settings import WorkerSettings
from iot_contract import Reading, RedisKeys
from iot_models.core import InferenceCore
from tests.harness.models import LinearModel, linear_core
from tests.harness.pipeline import (
    predictions,
    publish,
    reading_messages,
    settle,
    wait_for,
    worker_settings,
)
from tests.harness.services import Service

pytestmark = pytest.mark.integration

COUNT = 20
DEVICES = 3


@pytest.fixture
def settings(
    mosquitto: Service, redis_service: Service, redis_keys: RedisKeys, unique: str
) -> WorkerSettings:
    return worker_settings(mosquitto.url, redis_service.url, redis_keys, unique, max_batch=16)


def _sixteen_feature_core(worker_id: str) -> InferenceCore:
    """The simulator's readings have 16 features."""
    model = LinearModel(weights=tuple(0.05 * (i - 8) for i in range(16)))
    return InferenceCore({"lin": model}, default_model="lin", worker_id=worker_id)


def _without_boot(metrics: WorkerMetrics) -> float:
    return metrics.registry.get_sample_value("worker_readings_without_boot_total") or 0.0


def _wait_until(check: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


@pytest.mark.parametrize(
    "client",
    [
        {"mode": "devices"},
        {"mode": "load", "load_client": "raw", "protocol": "3.1.1", "connections": 2},
    ],
    ids=["paho-devices", "raw-load"],
)
def test_a_restarted_simulator_gets_one_prediction_per_reading(
    settings: WorkerSettings,
    mosquitto: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
    client: dict[str, Any],
) -> None:
    sim = SimSettings(
        mqtt_url=mosquitto.url,
        devices=DEVICES,
        rate=50,
        count=COUNT,
        device_prefix=f"r{unique}",
        **client,
    )
    with running_worker(settings, _sixteen_feature_core(settings.worker_id)) as (worker, _):
        for run in (1, 2):  # the same device ids, seq from 0 again
            run_sim(sim)
            want = run * DEVICES * COUNT
            assert wait_for(rclient, redis_keys.predictions, want) == want, f"run {run}"
        assert settle(rclient, redis_keys.predictions) == 2 * DEVICES * COUNT
        assert _without_boot(worker.metrics) == 0
    got = predictions(rclient, redis_keys)
    ids = Counter((p.device_id, p.boot, p.seq) for p in got)
    assert max(ids.values()) == 1, "no reading stored twice"
    boots: dict[str, set[int | None]] = {}
    for device_id, boot, _seq in ids:
        boots.setdefault(device_id, set()).add(boot)
    assert len(boots) == DEVICES
    for device_id, device_boots in boots.items():
        assert len(device_boots) == 2 and None not in device_boots, device_id
        for boot in device_boots:
            seqs = sorted(s for d, b, s in ids if (d, b) == (device_id, boot))
            assert seqs == list(range(COUNT)), (device_id, boot)


def _readings(dev: str, boot: int | None, ts: float, n: int = 10) -> list[Reading]:
    return [
        Reading(device_id=dev, boot=boot, seq=i, ts=ts + i, features=[1.0, 2.0, i])
        for i in range(n)
    ]


def test_redeliveries_are_absorbed_and_restarts_are_stored_with_or_without_boot_ids(
    settings: WorkerSettings,
    mosquitto: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
) -> None:
    with_boot, bootless = f"b{unique}", f"n{unique}"
    first_run = _readings(with_boot, 5, 1000.0) + _readings(bootless, None, 1000.0)
    second_run = _readings(with_boot, 6, 2000.0) + _readings(bootless, None, 2000.0)
    with running_worker(settings, linear_core(settings.worker_id)) as (worker, _):
        for attempt in range(2):  # the same bytes twice: what a broker redelivery carries
            publish(mosquitto, reading_messages(first_run), client_id=f"p{attempt}{unique}")
        assert wait_for(rclient, redis_keys.predictions, 20) == 20
        assert _wait_until(lambda: _without_boot(worker.metrics) == 20)
        assert settle(rclient, redis_keys.predictions) == 20

        publish(mosquitto, reading_messages(second_run), client_id=f"p2{unique}")
        assert wait_for(rclient, redis_keys.predictions, 40) == 40
        publish(mosquitto, reading_messages(second_run[-3:]), client_id=f"p3{unique}")
        assert _wait_until(lambda: _without_boot(worker.metrics) == 33)
        assert settle(rclient, redis_keys.predictions) == 40
    got = Counter(
        (p.device_id, p.boot, p.seq, p.hops.device_ts) for p in predictions(rclient, redis_keys)
    )
    assert max(got.values()) == 1
    expected = {(r.device_id, r.boot, r.seq, r.ts) for r in first_run + second_run}
    assert set(got) == expected
