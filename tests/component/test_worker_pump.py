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
from contextlib import AbstractContextManager
from dataclasses import dataclass
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
        while (
            read := self._read(0.1 if timer_at is None else timer_at - time.monotonic())
        ) is not None:
            for topic, payload in read:
                self.publish(topic, payload)
            due = timer_at is not None and time.monotonic() >= timer_at
            if (pump := self._pump) is not None and (read or due):
                delay = pump()
                timer_at = None if delay is None else time.monotonic() + delay

    def _read(self, wait: float) -> list[tuple[str, bytes]] | None:
        """What arrives within ``wait`` seconds, with all that follows it at once (one
        socket read's worth); None once closed."""
        out: list[tuple[str, bytes]] = []
        try:
            message = self._inbox.get(timeout=max(0.0, wait))
        except queue.Empty:
            return out
        while message is not None:
            out.append(message)
            try:
                message = self._inbox.get_nowait()
            except queue.Empty:
                return out
        return None


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


@dataclass
class Rig:
    """An intake-thread source and an in-memory sink on their own ``memory://`` URLs, the
    bundled model, and feature rows."""

    source: IntakeThreadSource
    sink: MemorySink
    urls: dict[str, Any]
    core: InferenceCore
    rows: np.ndarray

    def worker(self, **settings: Any) -> AbstractContextManager[tuple[Worker, threading.Event]]:
        """The worker running on this rig (``settings`` over :func:`settings_for`'s)."""
        return running_worker(settings_for(self.urls, **settings), self.core)

    def hand_over(self, seq: int, n: int = 1) -> int:
        """See :func:`hand_over`."""
        return hand_over(self.source, self.sink, self.rows, seq, n)

    def arrive(self, seqs: range) -> None:
        """Readings ``seqs`` reach the intake together."""
        self.source.arrive([reading(self.rows, seq) for seq in seqs])


@pytest.fixture
def rig(unique: str, core: InferenceCore, rows: np.ndarray) -> Iterator[Rig]:
    urls = {"mqtt_url": f"memory://src-{unique}", "redis_url": f"memory://sink-{unique}"}
    source = MemorySource.registry.get(urls["mqtt_url"], IntakeThreadSource)
    assert isinstance(source, IntakeThreadSource)
    yield Rig(source, MemorySink.named(urls["redis_url"], RedisKeys("t")), urls, core, rows)
    MemorySource.forget(urls["mqtt_url"])
    MemorySink.forget(urls["redis_url"])


def test_at_a_trickle_the_intake_thread_cuts_scores_and_stores(rig: Rig) -> None:
    sink = rig.sink
    with rig.worker(max_wait_ms=2) as (worker, _):
        start = rig.hand_over(0)
        for seq in range(start + 1, start + 6):
            rig.arrive(range(seq, seq + 1))
            until(partial(lambda n: len(sink.predictions) == n, seq))
        until(lambda: rig.source.unacked == 0)
        assert sample(worker, "worker_takeovers_total") == 0
    assert sink.writers[start - 1 :] == [INTAKE] * 6, sink.writers
    assert [p["seq"] for p in sink.predictions] == list(range(1, start + 6))


def test_a_batch_nothing_more_comes_for_is_cut_at_its_deadline_by_the_intake_s_timer(
    rig: Rig,
) -> None:
    """Fixed policy, 64 readings a batch: three readings wait for their 50 ms deadline,
    and the intake (woken by the delay its pump returned, not by a reading) cuts them."""
    with rig.worker(max_batch=64, max_wait_ms=50):
        start = rig.hand_over(0)
        rig.arrive(range(start + 1, start + 4))
        until(lambda: len(rig.sink.predictions) == start + 3)
        until(lambda: rig.source.unacked == 0)
    assert rig.sink.batches[-1] == 3
    assert rig.sink.writers[-1] == INTAKE


def test_under_load_the_worker_thread_takes_over_and_then_hands_back(rig: Rig) -> None:
    sink = rig.sink
    with rig.worker(max_wait_ms=2) as (worker, _):
        start = rig.hand_over(0)
        writers = len(sink.writers)
        rig.arrive(range(start + 1, start + 801))  # a load: 100 batches at once
        until(lambda: len(sink.predictions) == start + 800)
        assert sample(worker, "worker_takeovers_total") >= 1
        took = set(sink.writers[writers:])
        assert {"worker", "redis-writer"} & took, "the worker's threads stored the load"
        seq = rig.hand_over(start + 800)  # a trickle: the intake takes the work back
        until(lambda: rig.source.unacked == 0)
    assert [p["seq"] for p in sink.predictions] == list(range(1, seq + 1)), "in cut order"
    assert len(rig.source.acked) == seq


def test_a_graceful_stop_while_the_intake_drives_stores_and_acknowledges_everything(
    rig: Rig,
) -> None:
    source, sink = rig.source, rig.sink
    with rig.worker(max_batch=8, max_wait_ms=60_000, unsubscribe_on_stop=False) as (worker, _):
        start = rig.hand_over(0, n=8)  # full batches: cut at once
        rig.arrive(range(start + 1, start + 8))
        until(lambda: source.pending() == 0 and len(source.acked) + source.unacked == start + 7)
        assert len(sink.predictions) == start, "the 60 s deadline keeps the batch open"
    assert sorted(p["seq"] for p in sink.predictions) == list(range(1, start + 8))
    assert sink.writers[-1] == "worker", "the stop finished the batch on the worker's thread"
    assert source.unacked == 0
    assert sample(worker, "worker_acks_pending") == 0


def test_a_store_outage_is_retried_off_the_intake_thread_and_loses_nothing(rig: Rig) -> None:
    """Retrying on the intake thread would keep it from the broker's socket (MQTT: no
    reads, no keepalive) for as long as Redis is down."""
    source, sink = rig.source, rig.sink
    with rig.worker(max_wait_ms=2):
        start = rig.hand_over(0)
        sink.down = True
        rig.arrive(range(start + 1, start + 4))
        until(lambda: sink.failed_writes >= 2)
        rig.arrive(range(start + 4, start + 6))
        until(lambda: source.unacked == 5)  # the intake still takes readings in
        assert len(sink.predictions) == start
        sink.down = False
        until(lambda: source.unacked == 0)
    assert [p["seq"] for p in sink.predictions] == list(range(1, start + 6)), "in order"
    assert "redis-writer" in sink.writers[start:]


def test_without_score_on_intake_the_worker_thread_does_the_work(rig: Rig) -> None:
    with rig.worker(score_on_intake=False):
        for seq in range(1, 4):
            rig.arrive(range(seq, seq + 1))
            until(partial(lambda n: len(rig.sink.predictions) == n, seq))
    assert set(rig.sink.writers) == {"worker"}


class _Broken:
    """A scorer that fails the way a bug would."""

    def infer(self, *_args: object, **_kwargs: object) -> Any:
        raise RuntimeError("a bug in scoring")


def test_an_error_on_the_intake_thread_ends_the_run_with_that_error(rig: Rig) -> None:
    worker = Worker(settings_for(rig.urls), rig.core, rig.source, rig.sink)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(threading.Event())
        except Exception as exc:
            outcome.append(exc)

    with rig.source:
        thread = threading.Thread(target=run, name="worker", daemon=True)
        thread.start()
        seq = rig.hand_over(0)
        until(lambda: rig.source.unacked == 0)
        worker.core = _Broken()
        rig.arrive(range(seq + 1, seq + 2))
        thread.join(10)
    assert not thread.is_alive(), "the run did not end"
    assert [str(e) for e in outcome] == ["a bug in scoring"]
    assert len(rig.source.acked) == seq and rig.source.unacked == 1, "left for redelivery"
