"""Failure semantics: Redis outages and worker crashes lose nothing and duplicate nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from inference_worker.app import running_worker
from iot_contract import Reading, RedisKeys
from iotstream.localservices import RedisProcess
from tests.harness.models import linear_core
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


def test_redis_outage_loses_nothing(mosquitto: Service, tmp_path: Path, unique: str) -> None:
    keys = RedisKeys(f"t{unique}")
    with RedisProcess(tmp_path / "redis", appendonly=True) as server:
        settings = worker_settings(mosquitto.url, server.url, keys, unique)
        core = linear_core(settings.worker_id)
        readings = [
            Reading(device_id=f"d{unique}", seq=i, ts=1.0, features=[i, 0.0, 1.0])
            for i in range(200)
        ]
        client = redis.Redis.from_url(server.url)
        with running_worker(settings, core) as (worker, _stop):
            publish(mosquitto, reading_messages(readings[:50]), client_id=f"a{unique}")
            assert wait_for(client, keys.predictions, 50) == 50
            server.stop()
            sender = threading.Thread(
                target=publish,
                args=(mosquitto, reading_messages(readings[50:150])),
                kwargs={"client_id": f"b{unique}"},
            )
            sender.start()
            time.sleep(3)
            assert worker.metrics.counter("redis_retries")._value.get() > 0
            server.start()
            sender.join(30)
            publish(mosquitto, reading_messages(readings[150:]), client_id=f"c{unique}")
            assert wait_for(client, keys.predictions, 200, timeout=30) == 200
        assert settle(client, keys.predictions) == 200
        stored = predictions(client, keys)
        assert sorted(p.seq for p in stored) == list(range(200))
        client.close()


def test_stop_during_redis_outage_leaves_readings_for_redelivery(
    mosquitto: Service, tmp_path: Path, unique: str
) -> None:
    """A worker told to stop while Redis is down gives up after the grace period without
    acknowledging; the broker keeps the readings for the worker's next run."""
    keys = RedisKeys(f"t{unique}")
    with RedisProcess(tmp_path / "redis") as server:
        settings = worker_settings(mosquitto.url, server.url, keys, unique, shutdown_grace=1.0)
        readings = [
            Reading(device_id=f"d{unique}", seq=i, ts=1.0, features=[i, 0.0, 1.0])
            for i in range(40)
        ]
        server.stop()
        started = time.monotonic()
        with running_worker(settings, linear_core(settings.worker_id)) as (worker, _stop):
            publish(mosquitto, reading_messages(readings), client_id=f"a{unique}")
            time.sleep(1.0)
            assert worker.ready() == (False, "redis writes failing")
        assert time.monotonic() - started < 15, "the stop did not hang on the outage"
        server.start()
        client = redis.Redis.from_url(server.url)
        with running_worker(settings, linear_core(settings.worker_id)):
            assert wait_for(client, keys.predictions, 40) == 40
        assert sorted(p.seq for p in predictions(client, keys)) == list(range(40))
        client.close()


def test_a_writer_crash_stops_the_worker_instead_of_hanging_it(
    mosquitto: Service, redis_service: Service, unique: str
) -> None:
    keys = RedisKeys(f"t{unique}")
    settings = worker_settings(mosquitto.url, redis_service.url, keys, unique, max_batch=4)
    readings = [
        Reading(device_id=f"d{unique}", seq=i, ts=1.0, features=[i, 0.0, 1.0]) for i in range(20)
    ]
    with running_worker(settings, linear_core(settings.worker_id)) as (worker, stop):

        def broken(*_args: object) -> None:
            raise RuntimeError("simulated bug in the writer")

        worker.sink.write = broken  # type: ignore[method-assign,assignment]
        publish(mosquitto, reading_messages(readings), client_id=f"a{unique}")
        assert stop.wait(10), "the worker asked itself to stop"
    assert worker.failed
    assert worker.metrics.gauge("acks_pending")._value.get() > 0, "nothing was acknowledged"
