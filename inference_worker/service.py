"""The worker's run loop: reading source -> batcher -> inference core -> prediction sink -> ack.

The loop knows the source and sink only through :mod:`inference_worker.bus` (MQTT and Redis
in production, the in-memory pair in component tests). Its work runs on one of two threads
at a time: at moderate rates on the source's intake thread (paho's network thread, which
wakes for each read anyway: :meth:`Worker._pump`, ``WORKER_SCORE_ON_INTAKE``), under load and
for sources without an intake thread on the worker's own (:meth:`Worker._step`). A batch is
stored and acknowledged on the thread that cut it when nothing else is being stored and
little is waiting (no hand-off); under load it goes to a writer thread, so the next batch
is scored while Redis runs the previous write. ONNX Runtime releases the GIL while it
computes, so the intake keeps receiving meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from inference_worker.bootless import BootlessReadings
from inference_worker.buffer import BoundedBuffer
from inference_worker.bus import Incoming, PredictionSink, ReadingSource, SinkError, WriteResult
from inference_worker.health import readiness
from inference_worker.metrics import WorkerMetrics
from inference_worker.observers import BatchObserver
from inference_worker.ratelog import RateLimitedLog
from inference_worker.settings import WorkerSettings
from iot_batching import Batcher, make_policy
from iot_contract import (
    ContractError,
    DeadLetter,
    Reading,
    RejectReason,
    TopicKind,
    decode_reading,
    inference_topic,
    parse_device_topic,
)
from iot_models.core import PredictionRecord, Scorer

__all__ = ["Worker"]


@dataclass(slots=True)
class _Job:
    """A scored batch on its way to Redis."""

    batch: list[Incoming]
    records: list[PredictionRecord]
    deadletters: list[DeadLetter]


log = logging.getLogger(__name__)

_RETRY_TURN = 0.001
"""Seconds after which the intake tries again to take the work while the run loop glances
at it (:meth:`Worker._watch`) ..."""
_RETRY_TAKEN = 0.005
"""... and while the run loop has taken it over under load (reads come all the time then:
a shorter timer would only wake the intake's thread for nothing)."""
_SETTLE_WITHIN = 0.005
"""Seconds after sending a batch at which the intake reads the answer if nothing else has
woken it (Redis answers within a millisecond or two)."""


class Worker:
    """Runs until ``stop`` is set, then shuts down gracefully (see :meth:`run`)."""

    def __init__(
        self,
        settings: WorkerSettings,
        core: Scorer,
        source: ReadingSource,
        sink: PredictionSink,
        metrics: WorkerMetrics | None = None,
        *,
        observers: Sequence[BatchObserver] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.core = core
        self.source = source
        self.sink = sink
        self.metrics = m = metrics or WorkerMetrics()
        # the per-batch series, resolved once (each look-up is a dict and a type check)
        self._received, self._stored = m.counter("received"), m.counter("stored")
        self._batches, self._duplicates = m.counter("batches"), m.counter("duplicates")
        self._acks_pending, self._queue_depth = m.gauge("acks_pending"), m.gauge("queue_depth")
        self._backpressure = m.gauge("backpressure_seconds")
        self._batch_size = m.histogram("batch_size")
        self._inference_seconds = m.histogram("inference_seconds")
        self._clock = clock
        self._observers = tuple(observers)
        self._batcher = Batcher[Incoming](
            make_policy(
                settings.batch_policy,
                settings.max_batch,
                settings.max_wait_ms / 1000,
                settings.batch_target_wait_ms / 1000,
                settings.batch_cost_share,
                settings.batch_cpu_budget,
            )
        )
        self._rejects = RateLimitedLog(log)
        self._bootless = BootlessReadings(self.metrics.counter("without_boot"))
        self.last_tick = time.monotonic()
        """When the run loop last turned (liveness)."""
        self.redis_ok = True
        """Whether the last Redis write worked (readiness)."""
        self._report_at = time.monotonic() + settings.report_every
        self._reported = (0.0, 0.0, 0.0)
        self._jobs: BoundedBuffer[_Job | None] = BoundedBuffer(2)
        self._handed = 0
        """Batches given to the writer thread (written by the run loop only)."""
        self._written = 0
        """Batches the writer thread has finished (written by the writer only)."""
        self._stop = threading.Event()
        self._sent: _Job | None = None
        """The batch sent to the sink by this thread whose answer is not read yet."""
        self._sent_at = 0.0
        self.failed = False
        """Set when the writer died of an unexpected error (the run then ends)."""
        self._stopping_since: float | None = None
        self._turn = threading.Lock()
        """Held while cutting, scoring and storing, when the source's intake thread does it
        too (:meth:`_pump`): one of the two threads at a time."""
        self._pumping = False
        self._takeover = threading.Event()
        """Set by the intake under load: the run loop's thread takes the work over."""
        self._intake_waiting = False
        """The intake found the work taken (it tries again: :meth:`_retry_turn`)."""
        self._taken = False
        """The run loop's thread has taken the work over (under load)."""
        self._pump_error: Exception | None = None
        """What made :meth:`_pump` fail (re-raised by :meth:`run`, as its own errors are)."""

    def _gave_up(self, now: float) -> bool:
        """Whether the stop grace period has run out (counted from when the writer first
        saw the stop: the worker thread may be waiting for room in the writer's buffer)."""
        if self._stopping_since is None:
            self._stopping_since = now
        return now - self._stopping_since > self.settings.shutdown_grace

    def ready(self) -> tuple[bool, str]:
        """Readiness: the source delivers and the sink's last write worked."""
        return readiness(self.source.ready(), self.redis_ok)

    def run(self, stop: threading.Event) -> None:
        """Process readings until ``stop`` is set; then unsubscribe, finish what was received,
        store and acknowledge it, and return (the caller disconnects).

        A batch is stored on this thread when the writer is idle and less than a batch is
        waiting in the source: sent at once, its answer read (and the batch acknowledged)
        when this thread next wakes, so it never sleeps on the round trip. Otherwise the
        writer thread stores it, so the next batch is decoded and scored while Redis
        executes the previous write (at most two batches wait for it). Either way batches
        are stored and acknowledged in the order they were cut. With a source that lends its
        intake thread (:meth:`ReadingSource.drive`) that thread does this work at moderate
        rates, and this one only watches (:meth:`_watch`).
        """
        self._stop = stop
        writer = threading.Thread(
            target=self._write_loop, args=(stop,), name="redis-writer", daemon=True
        )
        writer.start()
        self._pumping = self.settings.score_on_intake  # before drive(): it may pump at once
        if self._pumping and not self.source.drive(self._pump):
            self._pumping = False
        pumping = self._pumping
        if pumping:
            log.info("batches are cut, scored and stored on the source's network thread")
            # this thread has the work until the intake comes for it: readings may have
            # arrived before the intake had a pump to run
            self._takeover.set()
        try:
            while not stop.is_set():
                if pumping:
                    self._watch(stop, idle_timeout=0.1)
                else:
                    self._step(idle_timeout=0.1)
            if pumping:
                self._pumping = False
                self.source.drive(None)
            with self._turn:  # a pump under way finishes first
                if self._pump_error is not None:
                    raise self._pump_error
                self._finish()
        finally:
            self._jobs.put(None)  # no more batches
            writer.join()
        if self.failed:
            log.error("stopped after a writer failure")
        else:
            log.info("stopped cleanly")

    def _finish(self) -> None:
        """Score what was received before the stop (the writer stores and acks it)."""
        if self.settings.unsubscribe_on_stop:
            log.info("stopping: unsubscribing, then finishing the readings already received")
            self.source.unsubscribe()
            pending = None  # until the broker stops sending
        else:
            pending = self.source.pending()  # readings arriving later stay unacknowledged
            log.info(
                "stopping: keeping the subscription (the broker queues readings for this "
                "session); finishing the %d readings already received",
                pending + len(self._batcher),
            )
        while pending is None or pending > 0:
            items = self.source.take(
                self._batcher.max_size if pending is None else pending, timeout=0.05
            )
            if not items:
                break
            if pending is not None:
                pending -= len(items)
            for closed in self._batcher.add_many(items, time.monotonic(), self.source.pending()):
                self.process(closed)
        if batch := self._batcher.flush():
            self.process(batch)
        self._settle()

    def _step(self, idle_timeout: float) -> None:
        if self._sent is not None:  # wake in time to acknowledge it if nothing else comes
            idle_timeout = min(idle_timeout, self._batcher.policy.max_wait)
        now = self.last_tick = time.monotonic()
        if now >= self._report_at:
            self._report(now)
        wait = self._batcher.wait(now, self.source.pending())
        if wait is None and (ahead := self._batcher.ahead(now)) is not None:
            # no batch open, and readings are coming: sleep through the first one and be
            # woken once the batch it opens is full or due (one wake-up per batch, not two;
            # each costs the CPU of cold caches); an empty input is looked at every
            # first_within, so the max_wait bound holds if the traffic stops
            items = self.source.take(
                self._batcher.max_size,
                idle_timeout,
                wait_for=ahead.items + 1,
                first_within=max(0.0, ahead.until - now),
            )
        elif wait is None:  # idle or trickle: wake at the first reading
            items = self.source.take(self._batcher.max_size, idle_timeout)
        else:  # sleep until the open batch can be cut (full, due, or what the policy
            # wants to see has arrived), waking at least every idle_timeout to see a stop
            items = self.source.take(
                self._batcher.max_size,
                max(0.0, min(wait.until - now, idle_timeout)),
                wait_for=wait.items,
            )
        # everything taken joins the open batch before it is judged: cutting an overdue
        # batch at its first new item left the rest to wait a whole deadline more
        if not items:
            self._settle()
        for batch in self._add(items, time.monotonic(), self.source.pending()):
            self.process(batch)

    def _add(self, items: list[Incoming], now: float, queued: int) -> list[list[Incoming]]:
        """Add what was taken to the open batch; returns the batches that closes. A batch
        they open counts its age from when its first reading was queued, and the adaptive
        policy its time from when that reading is estimated to have arrived."""
        first = items[0] if items and not len(self._batcher) else None
        return self._batcher.add_many(
            items,
            now,
            queued,
            first_arrived=(first.queued_at or None) if first else None,
            first_arrived_est=(first.arrived_at or None) if first else None,
        )

    def _pump(self) -> float | None:
        """The run loop's work on the source's intake thread, after a hand-over or when the
        delay it returned has passed: cut what is due, score it, send it to the sink, and
        acknowledge what the sink has answered for. Never waits: under load (see
        :meth:`_loaded`) it hands the work to the run loop's own thread
        (:meth:`_watch`), which reads and scores in parallel with the intake. Returns the
        seconds until it must run again if nothing arrives first (the open batch's
        deadline, the answer of a batch sent, or a retry while the run loop has the work),
        or None."""
        if not self._pumping:
            return None
        if not self._turn.acquire(blocking=False):
            self._intake_waiting = True  # the run loop hands the work back when it can
            return self._retry_turn()
        try:
            if self._loaded():
                self.metrics.counter("takeovers").inc()
                self._takeover.set()
                return self._retry_turn()
            return self._cut(time.monotonic())
        except Exception as exc:  # not on the intake's thread: end the run
            log.exception("the run loop failed on the source's intake thread; stopping")
            self._pump_error = exc
            self._pumping = False
            self._stop.set()
            return None
        finally:
            self._turn.release()

    def _retry_turn(self) -> float:
        """When the intake should come for the work again if no reading brings it sooner."""
        return _RETRY_TAKEN if self._taken or self._takeover.is_set() else _RETRY_TURN

    def _loaded(self) -> bool:
        """More than the intake's thread should take on: more than two batches waiting (a
        backlog: the run loop's thread then scores while the intake reads), or the writer
        busy (storing would mean waiting for it)."""
        return self.source.pending() > 2 * self._batcher.max_size or self._handed != self._written

    def _watch(self, stop: threading.Event, idle_timeout: float) -> None:
        """The run loop's own thread while the intake pumps: reports and liveness, and
        under load the whole work (as without pumping) until the load has passed and the
        intake is there to take it back; also a batch the intake left due (the connection
        dropped with a batch open)."""
        self._takeover.wait(idle_timeout)
        if not self._turn.acquire(timeout=idle_timeout):
            return  # the intake has it (or waits for room in the writer's buffer)
        try:
            now = self.last_tick = time.monotonic()
            if now >= self._report_at:
                self._report(now)
            if self._takeover.is_set():
                self._takeover.clear()
                self._intake_waiting, self._taken = False, True
                try:
                    while not stop.is_set() and (self._loaded() or not self._intake_waiting):
                        self._step(idle_timeout)
                finally:
                    self._taken = False
            elif not stop.is_set() and self._overdue(now, idle_timeout):
                self._cut(now)
        finally:
            self._turn.release()

    def _overdue(self, now: float, slack: float) -> bool:
        """Whether the intake has left work undone ``slack`` seconds past its time (its
        thread is reconnecting, say): an open batch past its deadline, or a batch's answer
        not read."""
        late = self._batcher.opened_at is not None and (
            now - self._batcher.opened_at > self._batcher.policy.max_wait + slack
        )
        return late or (self._sent is not None and now - self._sent_at > slack)

    def _cut(self, now: float) -> float | None:
        """Take what the intake handed over, process the batches that closes, read the
        answer of a batch sent before if no new one went; returns when to come back."""
        items = self.source.take(self.source.pending() or 1, 0.0)
        closed = self._add(items, now, 0)
        for batch in closed:
            self.process(batch)
        if not closed:
            self._settle()
        wait = self._batcher.wait(now)
        delay = None if wait is None else max(0.0, wait.until - now)
        if self._sent is not None:  # its answer is read when this runs next
            delay = _SETTLE_WITHIN if delay is None else min(delay, _SETTLE_WITHIN)
        return delay

    def process(self, batch: list[Incoming]) -> None:
        """Decode and score one batch, then store it here or hand it to the writer (see
        :meth:`run`; waits while two batches are already waiting for Redis: backpressure).

        Only what the batch's records need runs before they are on their way to Redis: the
        observers (drift counting, capture) and the batch metrics come after, so no reading
        waits for them."""
        self._received.inc(len(batch))
        self._acks_pending.inc(len(batch))  # before the batch can be acknowledged
        started = time.perf_counter()
        readings: list[Reading] = []
        origin: list[Incoming] = []
        deadletters: list[DeadLetter] = []
        for item in batch:
            try:
                reading = self._decode(item)
            except ContractError as exc:
                deadletters.append(self._deadletter(item, exc))
                continue
            self._bootless.note(reading)
            readings.append(reading)
            origin.append(item)
        received_ts = [item.received_ts for item in origin]
        result = self.core.infer(readings, received_ts)
        for index, error in result.rejected:
            deadletters.append(self._deadletter(origin[index], error, readings[index].device_id))
        scored = time.perf_counter()
        job = _Job(batch, result.records, deadletters)
        self._settle()  # the batch sent before goes first
        if self._handed == self._written and self.source.pending() < self._batcher.max_size:
            # the writer has nothing in hand and little is waiting: store it from here, with
            # no thread hand-off (the writer only ever gets work from this thread, so it
            # stays idle meanwhile and the order of batches is kept)
            self._begin(job)
        else:
            self._to_writer(job)
        self._batches.inc()
        self._batch_size.observe(len(batch))
        self._inference_seconds.observe(scored - started)
        self._queue_depth.set(self.source.pending())
        self._backpressure.set(self.source.blocked_seconds)
        for observer in self._observers:
            observer.observe(readings, received_ts, result)

    def _to_writer(self, job: _Job) -> None:
        """Hand ``job`` to the writer thread (it stores with retries and acknowledges); the
        batches after it go there too until it is done, so their order is kept."""
        self._handed += 1
        self._jobs.put(job)

    def _begin(self, job: _Job) -> None:
        """Send ``job`` to the sink without waiting for the answer (:meth:`_settle` reads
        it); if it cannot be sent, the writer thread stores it with the usual retries."""
        if self.failed:
            return  # left unacknowledged: the broker redelivers after a restart
        try:
            self.sink.send(job.records, job.deadletters, self._clock())
        except SinkError:
            self._to_writer(job)
            return
        self._sent, self._sent_at = job, time.monotonic()

    def _settle(self) -> None:
        """Read the answer for the batch sent before and acknowledge it; if its outcome is
        not certain, the writer thread writes it again with the usual retries
        (deduplicated). Retrying here would keep a thread that reads the broker (when the
        intake runs this) from its socket for the length of a Redis outage."""
        job, self._sent = self._sent, None
        if job is None:
            return
        try:
            result = self.sink.collect()
        except SinkError as exc:
            self.metrics.counter("redis_retries").inc()
            log.warning("Redis write failed (%s); writing the batch again", exc)
            self._to_writer(job)
            return
        except Exception:  # noqa: BLE001 - see _fail
            self._fail()
            return
        self._done(job, result)

    def _write_loop(self, stop: threading.Event) -> None:
        while True:
            for job in self._jobs.take(1, timeout=1.0):
                if job is None:
                    return
                self._commit_guarded(job)
                self._written += 1

    def _commit_guarded(self, job: _Job) -> None:
        """Store and acknowledge ``job``; an unexpected error stops the worker (a dead
        writer must stop it, not hang it) and leaves the batch unacknowledged."""
        if self.failed:
            return  # left unacknowledged: the broker redelivers after a restart
        try:
            self._commit(job, self._stop)
        except Exception:  # noqa: BLE001 - see _fail
            self._fail()

    def _fail(self) -> None:
        """An unexpected error while storing: stop the worker (a dead writer must stop it,
        not hang it); what is unacknowledged is redelivered after a restart."""
        log.exception(
            "the Redis writer failed; stopping (unacknowledged readings will be redelivered)"
        )
        self.failed = True
        self._stop.set()

    def _commit(self, job: _Job, stop: threading.Event) -> None:
        if (result := self._store(job.records, job.deadletters, stop)) is not None:
            self._done(job, result)

    def _done(self, job: _Job, result: WriteResult) -> None:
        """``job`` is stored: count it, acknowledge its readings, send predictions back."""
        self.redis_ok = True
        self._stored.inc(result.stored)
        self._duplicates.inc(result.duplicates)
        self.source.ack(job.batch)
        self._acks_pending.dec(len(job.batch))
        if self.settings.publish_inference:
            self._publish_back(job.records)

    def _decode(self, item: Incoming) -> Reading:
        device_id, kind = parse_device_topic(item.topic)
        if kind is not TopicKind.TELEMETRY:
            raise ContractError(RejectReason.BAD_TOPIC, f"{item.topic!r} is not a telemetry topic")
        return decode_reading(
            item.payload,
            item.content_type,
            max_bytes=self.settings.max_payload,
            topic_device_id=device_id,
        )

    def _deadletter(
        self, item: Incoming, exc: ContractError, device_id: str | None = None
    ) -> DeadLetter:
        self.metrics.counter("rejected").labels(exc.reason.value).inc()
        self._rejects.warning(
            exc.reason.value, "dead-lettered a reading from %s: %s", item.topic[:200], exc
        )
        if device_id is None:
            try:
                device_id = parse_device_topic(item.topic)[0]
            except ContractError:
                device_id = None
        return DeadLetter.from_error(
            exc,
            topic=item.topic,
            payload=item.payload,
            received_ts=item.received_ts,
            worker_id=self.settings.worker_id,
            content_type=item.content_type,
            device_id=device_id,
        )

    def _store(
        self,
        predictions: list[PredictionRecord],
        deadletters: list[DeadLetter],
        stop: threading.Event,
    ) -> WriteResult | None:
        """Write one batch, retrying with backoff. Gives up (returns None, nothing is
        acknowledged, the broker keeps the readings) only when Redis is still failing
        ``shutdown_grace`` seconds after a stop was asked for."""
        delay = 0.1
        while True:
            try:
                result = self.sink.write(predictions, deadletters, self._clock())
            except SinkError as exc:
                self.metrics.counter("redis_retries").inc()
                log.warning(
                    "Redis write failed (%s); holding %d readings unacknowledged, "
                    "retrying in %.1fs",
                    exc,
                    len(predictions) + len(deadletters),
                    delay,
                )
                self.redis_ok = False
                self.last_tick = time.monotonic()
                if stop.is_set() and self._gave_up(time.monotonic()):
                    log.error(
                        "Redis still failing after the stop grace period: leaving %d "
                        "readings unacknowledged for redelivery",
                        len(predictions),
                    )
                    return None
                if stop.wait(delay):  # stopping: keep retrying until the grace period ends
                    time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            return result

    def _report(self, now: float) -> None:
        m = self.metrics
        received, stored = self._received._value.get(), self._stored._value.get()
        rejected = sum(c.get() for c in _children(m.counter("rejected")))
        prev_received, prev_stored, prev_rejected = self._reported
        elapsed = self.settings.report_every + (now - self._report_at)
        log.info(
            "%.0f readings/s | stored %d (+%d) | dead-lettered %d (+%d) | duplicates %d | "
            "buffer %d | worker thread took over %d times",
            (received - prev_received) / elapsed,
            stored,
            stored - prev_stored,
            rejected,
            rejected - prev_rejected,
            self._duplicates._value.get(),
            self.source.pending(),
            m.counter("takeovers")._value.get(),
        )
        self._reported = (received, stored, rejected)
        self._report_at = now + self.settings.report_every

    def _publish_back(self, records: list[PredictionRecord]) -> None:
        for record in records:
            self.source.reply(inference_topic(record["device_id"]), orjson.dumps(record))


def _children(counter: Any) -> list[Any]:
    return [child._value for child in counter._metrics.values()]


def describe(settings: WorkerSettings) -> str:
    """One line saying how the worker is set up (logged at start, secrets left out)."""
    shown = settings.model_dump(
        include={
            "worker_id",
            "mqtt_url",
            "mqtt_protocol",
            "share_group",
            "qos",
            "redis_url",
            "redis_prefix",
            "default_model",
            "variant",
            "max_batch",
            "max_wait_ms",
            "batch_policy",
            "batch_target_wait_ms",
            "batch_cost_share",
            "batch_cpu_budget",
        }
    )
    return orjson.dumps(shown, default=str).decode()
