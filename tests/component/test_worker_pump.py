"""The worker's run loop driven from its source's intake thread (``WORKER_SCORE_ON_INTAKE``,
on by default with MQTT): on the in-memory sink, with an in-memory source that has an
intake thread of its own, as MQTT's network thread is. At moderate rates that thread cuts,
scores and stores the batches; under load the worker's own thread takes the work over and
hands it back once the load has passed. The same runs over real Mosquitto and Redis in
tests/integration/test_worker_pipeline.py."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from functools import partial
from typing import Any, Self

import numpy as np
import pytest

from inference_worker.app import running_worker
from inference_worker.bus import Pump
from inference_worker.memory_sink import MemorySink
from inference_worker.memory_source import MemorySource
from inference_worker.service import Worker
from iot_contract import Reading, RedisKeys, encode_reading, telemetry_topic
from iot_models.core import InferenceCore
from tests.component.worker_support import reading, sample, settings_for, until

INTAKE = "intake"


class IntakeThreadSource(MemorySource):
    """An in-memory source whose readings reach the buffer through an intake thread that
    runs the worker's pump after each hand-over and when the delay it returned has passed
    (what :class:`~iot_mqtt.paho_client.WorkerClient` does with ``on_timer``)."""

    def __init__(self, maxsize: int = 2048) -> None:
        super().__init__(maxsize)
        self._inbox: queue.SimpleQueue[tuple[str, bytes] | None] = queue.SimpleQueue()
        self._pump: Pump | None = None
        self._thread = threading.Thread(target=self._intake, name=INTAKE, daemon=True)

    def __enter__(self) -> Self:
        super().__enter__()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._inbox.put(None)
        self._thread.join(10)
        super().__exit__(*exc_info)

    def drive(self, pump: Pump | None) -> bool:
        self._pump = pump
        return True

    def arrive(self, readings: list[Reading]) -> None:
        """The readings reach the intake together (one socket read's worth)."""
        for r in readings:
            self._inbox.put((telemetry_topic(r.device_id), encode_reading(r)))

    def _intake(self) -> None:
        timer_at: float | None = None
        while True:
            wait = 0.1 if timer_at is None else max(0.0, timer_at - time.monotonic())
            try:
                message = self._inbox.get(timeout=wait)
            except queue.Empty:
                message = ()  # type: ignore[assignment]
            if message is None:
                return
            while message:  # everything there is, as one read
                self.publish(*message)
                try:
                    message = self._inbox.get_nowait()
                except queue.Empty:
                    break
                if message is None:
                    return
            pump = self._pump
            if pump is not None and (message or (timer_at and time.monotonic() >= timer_at)):
                delay = pump()
                timer_at = None if delay is None else time.monotonic() + delay


def hand_over(
    source: IntakeThreadSource, sink: MemorySink, rows: np.ndarray, seq: int, n: int = 1
) -> int:
    """Send ``n`` readings at a time (after ``seq``) until the intake thread stores them
    (the worker's thread has the work at the start, and after a load, until the intake
    comes for it); returns the last ``seq`` sent."""
    while not sink.writers or sink.writers[-1] != INTAKE:
        assert seq < 1000, "the work never went to the intake thread"
        stored = len(sink.predictions)
        source.arrive([reading(rows, k) for k in range(seq + 1, seq + n + 1)])
        seq += n
        until(partial(lambda want: len(sink.predictions) == want, stored + n))
    return seq


@pytest.fixture
def driven(unique: str) -> Iterator[tuple[IntakeThreadSource, MemorySink, dict[str, Any]]]:
    urls = {"mqtt_url": f"memory://src-{unique}", "redis_url": f"memory://sink-{unique}"}
    source = MemorySource.registry.get(urls["mqtt_url"], IntakeThreadSource)
    assert isinstance(source, IntakeThreadSource)
    yield source, MemorySink.named(urls["redis_url"], RedisKeys("t")), urls
    MemorySource.forget(urls["mqtt_url"])
    MemorySink.forget(urls["redis_url"])


def test_at_a_trickle_the_intake_thread_cuts_scores_and_stores(
    driven: tuple[IntakeThreadSource, MemorySink, dict[str, Any]],
    core: InferenceCore,
    rows: np.ndarray,
) -> None:
    source, sink, urls = driven
    with running_worker(settings_for(urls, max_wait_ms=2), core) as (worker, _):
        start = hand_over(source, sink, rows, 0)
        for seq in range(start + 1, start + 6):
            source.arrive([reading(rows, seq)])
            until(partial(lambda n: len(sink.predictions) == n, seq))
        until(lambda: source.unacked == 0)
        assert sample(worker, "worker_takeovers_total") == 0
    assert sink.writers[start - 1 :] == [INTAKE] * 6, sink.writers
    assert [p["seq"] for p in sink.predictions] == list(range(1, start + 6))


def test_a_batch_nothing_more_comes_for_is_cut_at_its_deadline_by_the_intake_s_timer(
    driven: tuple[IntakeThreadSource, MemorySink, dict[str, Any]],
    core: InferenceCore,
    rows: np.ndarray,
) -> None:
    """Fixed policy, 64 readings a batch: three readings wait for their 50 ms deadline,
    and the intake (woken by the delay its pump returned, not by a reading) cuts them."""
    source, sink, urls = driven
    with running_worker(settings_for(urls, max_batch=64, max_wait_ms=50), core):
        start = hand_over(source, sink, rows, 0)
        source.arrive([reading(rows, seq) for seq in range(start + 1, start + 4)])
        until(lambda: len(sink.predictions) == start + 3)
        until(lambda: source.unacked == 0)
    assert sink.batches[-1] == 3
    assert sink.writers[-1] == INTAKE


def test_under_load_the_worker_thread_takes_over_and_then_hands_back(
    driven: tuple[IntakeThreadSource, MemorySink, dict[str, Any]],
    core: InferenceCore,
    rows: np.ndarray,
) -> None:
    source, sink, urls = driven
    with running_worker(settings_for(urls, max_wait_ms=2), core) as (worker, _):
        start = hand_over(source, sink, rows, 0)
        writers = len(sink.writers)
        source.arrive([reading(rows, seq) for seq in range(start + 1, start + 801)])  # a load
        until(lambda: len(sink.predictions) == start + 800)
        assert sample(worker, "worker_takeovers_total") >= 1
        took = set(sink.writers[writers:])
        assert {"worker", "redis-writer"} & took, "the worker's threads stored the load"
        seq = hand_over(source, sink, rows, start + 800)  # a trickle: the intake takes it back
        until(lambda: source.unacked == 0)
    assert [p["seq"] for p in sink.predictions] == list(range(1, seq + 1)), "in cut order"
    assert len(source.acked) == seq


def test_a_graceful_stop_while_the_intake_drives_stores_and_acknowledges_everything(
    driven: tuple[IntakeThreadSource, MemorySink, dict[str, Any]],
    core: InferenceCore,
    rows: np.ndarray,
) -> None:
    source, sink, urls = driven
    settings = settings_for(urls, max_batch=8, max_wait_ms=60_000, unsubscribe_on_stop=False)
    with running_worker(settings, core) as (worker, _):
        start = hand_over(source, sink, rows, 0, n=8)  # full batches: cut at once
        source.arrive([reading(rows, seq) for seq in range(start + 1, start + 8)])
        until(lambda: source.pending() == 0 and len(source.acked) + source.unacked == start + 7)
        assert len(sink.predictions) == start, "the 60 s deadline keeps the batch open"
    assert sorted(p["seq"] for p in sink.predictions) == list(range(1, start + 8))
    assert sink.writers[-1] == "worker", "the stop finished the batch on the worker's thread"
    assert source.unacked == 0
    assert sample(worker, "worker_acks_pending") == 0


def test_without_score_on_intake_the_worker_thread_does_the_work(
    driven: tuple[IntakeThreadSource, MemorySink, dict[str, Any]],
    core: InferenceCore,
    rows: np.ndarray,
) -> None:
    source, sink, urls = driven
    with running_worker(settings_for(urls, score_on_intake=False), core):
        for seq in range(1, 4):
            source.arrive([reading(rows, seq)])
            until(partial(lambda n: len(sink.predictions) == n, seq))
    assert set(sink.writers) == {"worker"}


class _Broken:
    """A scorer that fails the way a bug would."""

    def infer(self, *_args: object, **_kwargs: object) -> Any:
        raise RuntimeError("a bug in scoring")


def test_an_error_on_the_intake_thread_ends_the_run_with_that_error(
    driven: tuple[IntakeThreadSource, MemorySink, dict[str, Any]],
    core: InferenceCore,
    rows: np.ndarray,
) -> None:
    source, sink, urls = driven
    worker = Worker(settings_for(urls), core, source, sink)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(threading.Event())
        except Exception as exc:
            outcome.append(exc)

    with source:
        thread = threading.Thread(target=run, name="worker", daemon=True)
        thread.start()
        seq = hand_over(source, sink, rows, 0)
        until(lambda: source.unacked == 0)
        worker.core = _Broken()
        source.arrive([reading(rows, seq + 1)])
        thread.join(10)
    assert not thread.is_alive(), "the run did not end"
    assert [str(e) for e in outcome] == ["a bug in scoring"]
    assert len(source.acked) == seq and source.unacked == 1, "left for redelivery"
