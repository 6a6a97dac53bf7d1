"""The worker's run loop on the in-memory source and sink (``memory://``), with the real
``fault-clf`` ONNX model: batch cuts, ack only after store, deduplication, dead letters,
graceful stop and store outages, without a broker or Redis. The same behaviours are
checked against real Mosquitto and Redis in tests/integration/."""

from __future__ import annotations

import math
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np
import orjson
import pytest

from inference_worker.app import running_worker
from inference_worker.memory_sink import MemorySink
from inference_worker.memory_source import MemorySource
from iot_contract import RejectReason, encode_reading, telemetry_topic
from iot_models.core import InferenceCore
from tests.component.worker_support import publish, reading, sample, settings_for, until


@pytest.fixture
def bus(unique: str) -> Iterator[tuple[MemorySource, MemorySink, dict[str, Any]]]:
    urls = {"mqtt_url": f"memory://src-{unique}", "redis_url": f"memory://sink-{unique}"}
    yield MemorySource.named(urls["mqtt_url"]), MemorySink.named(urls["redis_url"]), urls
    MemorySource.forget(urls["mqtt_url"])
    MemorySink.forget(urls["redis_url"])


def test_full_batches_are_cut_at_max_batch_and_scored_like_the_core(
    bus: tuple[MemorySource, MemorySink, dict[str, Any]], core: InferenceCore, rows: np.ndarray
) -> None:
    source, sink, urls = bus
    sent = [reading(rows, seq) for seq in range(1, 41)]
    with running_worker(settings_for(urls, max_wait_ms=60_000), core) as (worker, _):
        publish(source, sent)
        until(lambda: len(sink.predictions) == 40)
        assert sample(worker, "worker_predictions_stored_total") == 40
    assert sink.batches == [8] * 5, "a 60 s deadline: every batch was cut because it was full"
    expected = core.infer(sent, [0.0] * len(sent)).records
    got = sorted(sink.predictions, key=lambda p: p["seq"])
    assert [p["seq"] for p in got] == list(range(1, 41))
    for mine, direct in zip(got, expected, strict=True):
        assert mine["label"] == direct["label"]
        assert math.isclose(mine["score"], direct["score"], rel_tol=1e-6)
    assert source.unacked == 0 and len(source.acked) == 40


def test_a_partial_batch_is_cut_at_its_deadline(
    bus: tuple[MemorySource, MemorySink, dict[str, Any]], core: InferenceCore, rows: np.ndarray
) -> None:
    source, sink, urls = bus
    with running_worker(settings_for(urls, max_batch=64, max_wait_ms=30), core):
        publish(source, [reading(rows, seq) for seq in (1, 2, 3)])
        until(lambda: len(sink.predictions) == 3)
        assert sink.batches == [3]


def test_batches_are_stored_on_the_loop_s_thread_at_a_trickle_and_by_the_writer_under_load(
    bus: tuple[MemorySource, MemorySink, dict[str, Any]], core: InferenceCore, rows: np.ndarray
) -> None:
    """Little waiting: the run loop stores the batch itself (no hand-off). A backlog of
    many batches: the writer thread stores while the loop scores the next. Either way
    every batch is stored in the order it was cut and acknowledged."""
    source, sink, urls = bus
    with running_worker(settings_for(urls, max_wait_ms=2), core):
        for seq in range(1, 4):  # a trickle: one reading per batch, nothing queued behind
            publish(source, [reading(rows, seq)])
            until(partial(lambda n: len(sink.predictions) == n, seq))
        assert set(sink.writers) == {"worker"}, sink.writers
        backlog = [reading(rows, seq) for seq in range(4, 804)]
        publish(source, backlog)  # 100 batches at once: far more than one is waiting
        until(lambda: len(sink.predictions) == 803)
    assert "redis-writer" in sink.writers, "under a backlog the writer thread stores"
    assert [p["seq"] for p in sink.predictions] == list(range(1, 804)), "in cut order"
    assert source.unacked == 0 and len(source.acked) == 803


def test_nothing_is_acknowledged_before_it_is_stored(
    bus: tuple[MemorySource, MemorySink, dict[str, Any]], core: InferenceCore, rows: np.ndarray
) -> None:
    source, sink, urls = bus
    sink.down = True
    with running_worker(settings_for(urls), core) as (worker, _):
        publish(source, [reading(rows, seq) for seq in range(1, 11)])
        until(lambda: sink.failed_writes >= 2)
        assert source.acked == [] and source.unacked == 10
        assert worker.ready() == (False, "redis writes failing")
        assert sample(worker, "worker_redis_retries_total") >= 2
        sink.down = False
        until(lambda: source.unacked == 0)
        assert worker.ready() == (True, "ready")
    assert sorted(p["seq"] for p in sink.predictions) == list(range(1, 11))


def test_a_redelivered_reading_is_stored_once(
    bus: tuple[MemorySource, MemorySink, dict[str, Any]], core: InferenceCore, rows: np.ndarray
) -> None:
    """A reconnect while a batch waits for the store: the broker sends the readings again,
    the first delivery's acks are void, and each reading still ends up stored once."""
    source, sink, urls = bus
    sink.down = True
    with running_worker(settings_for(urls), core) as (worker, _):
        publish(source, [reading(rows, seq) for seq in range(1, 6)])
        until(lambda: sink.failed_writes >= 1)
        assert source.redeliver() == 5
        sink.down = False
        until(lambda: source.unacked == 0)
        until(lambda: sample(worker, "worker_duplicates_total") == 5)
        assert sample(worker, "worker_readings_received_total") == 10
    assert sorted(p["seq"] for p in sink.predictions) == [1, 2, 3, 4, 5]


def test_bad_readings_are_dead_lettered_with_their_reason_and_good_ones_flow(
    bus: tuple[MemorySource, MemorySink, dict[str, Any]], core: InferenceCore, rows: np.ndarray
) -> None:
    source, sink, urls = bus
    good = reading(rows, 1)
    nan = orjson.loads(encode_reading(reading(rows, 2)))
    nan_payload = orjson.dumps(nan).replace(b"[", b"[NaN,", 1)
    short = reading(rows, 3).model_copy(update={"features": [1.0, 2.0]})
    bad = [
        (telemetry_topic("pump-1"), b"{not json"),
        (telemetry_topic("pump-1"), nan_payload),
        (telemetry_topic("pump-1"), encode_reading(short)),
        (telemetry_topic("pump-2"), encode_reading(good)),  # topic names another device
        ("devices/pump-1/status", encode_reading(good)),
    ]
    with running_worker(settings_for(urls), core) as (worker, _):
        for seq, (topic, payload) in enumerate(bad, start=10):
            source.publish(topic, payload)
            publish(source, [reading(rows, seq)])
        until(lambda: len(sink.deadletters) == 5 and len(sink.predictions) == 5)
        assert sample(worker, "worker_rejected_total", reason="malformed") == 1
        assert sample(worker, "worker_rejected_total", reason="invalid") == 1
    reasons = sorted(d.reason for d in sink.deadletters)
    assert reasons == sorted(
        [
            RejectReason.MALFORMED,
            RejectReason.INVALID,  # NaN: "features.0: Input should be a finite number"
            RejectReason.FEATURE_COUNT,
            RejectReason.DEVICE_MISMATCH,
            RejectReason.BAD_TOPIC,
        ]
    )
    assert source.unacked == 0, "a dead-lettered reading is handled: acknowledged"


@pytest.mark.parametrize("unsubscribe_on_stop", [True, False])
def test_a_graceful_stop_stores_and_acknowledges_what_was_received(
    bus: tuple[MemorySource, MemorySink, dict[str, Any]],
    core: InferenceCore,
    rows: np.ndarray,
    unsubscribe_on_stop: bool,
) -> None:
    source, sink, urls = bus
    settings = settings_for(
        urls, max_batch=64, max_wait_ms=60_000, unsubscribe_on_stop=unsubscribe_on_stop
    )
    with running_worker(settings, core) as (worker, _):
        publish(source, [reading(rows, seq) for seq in range(1, 8)])
        until(lambda: source.pending() == 0)  # taken into the open batch
        assert sink.predictions == [], "the 60 s deadline keeps the batch open"
    assert sorted(p["seq"] for p in sink.predictions) == list(range(1, 8))
    assert source.unacked == 0
    assert sample(worker, "worker_acks_pending") == 0


def test_a_stop_during_a_store_outage_leaves_the_readings_for_redelivery(
    bus: tuple[MemorySource, MemorySink, dict[str, Any]], core: InferenceCore, rows: np.ndarray
) -> None:
    source, sink, urls = bus
    sink.down = True
    with running_worker(settings_for(urls, shutdown_grace=0.3), core):
        publish(source, [reading(rows, seq) for seq in range(1, 6)])
        until(lambda: sink.failed_writes >= 1)
    assert sink.predictions == [] and source.acked == []
    assert source.unacked == 5, "the broker keeps them: they come back to the next worker"


def test_predictions_are_sent_back_to_their_devices_when_asked(
    bus: tuple[MemorySource, MemorySink, dict[str, Any]], core: InferenceCore, rows: np.ndarray
) -> None:
    source, _sink, urls = bus
    with running_worker(settings_for(urls, publish_inference=True), core):
        publish(source, [reading(rows, 1, "pump-1"), reading(rows, 1, "fan-2")])
        until(lambda: len(source.replies) == 2)
    topics = sorted(topic for topic, _ in source.replies)
    assert topics == ["devices/fan-2/inference", "devices/pump-1/inference"]
    assert {orjson.loads(p)["seq"] for _, p in source.replies} == {1}
