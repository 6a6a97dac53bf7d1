"""Where readings come from and where predictions go: two small interfaces and one factory.

The worker's run loop (:class:`inference_worker.service.Worker`) sees only a
:class:`ReadingSource` and a :class:`PredictionSink`. Each has a real implementation
(:class:`~inference_worker.mqtt_source.MqttSource`,
:class:`~inference_worker.redis_sink.RedisSink`) and an in-memory one
(:class:`~inference_worker.memory_source.MemorySource`,
:class:`~inference_worker.memory_sink.MemorySink`), chosen by URL scheme in
:func:`open_source` / :func:`open_sink` and nowhere else: ``memory://<name>`` for the
in-memory pair (component tests, embedding), ``mqtt[s]://`` / ``ws[s]://`` and ``redis[s]://``
/ ``unix://`` for the real ones.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Protocol, Self, TypeVar, Unpack
from urllib.parse import urlsplit

from inference_worker.buffer import BoundedBuffer, TakeWhen
from iot_contract import DeadLetter, RedisKeys

if TYPE_CHECKING:
    from inference_worker.settings import WorkerSettings
    from iot_models.core import PredictionRecord

__all__ = [
    "MEMORY_SCHEME",
    "BufferedIntake",
    "DeadLetters",
    "Incoming",
    "MemoryRegistry",
    "PredictionSink",
    "Pump",
    "ReadingSource",
    "Records",
    "SinkError",
    "SourceError",
    "WriteResult",
    "is_memory_url",
    "open_sink",
    "open_source",
]

MEMORY_SCHEME = "memory"
T = TypeVar("T")
Records = Sequence["PredictionRecord"]
"""A batch of prediction records (:func:`iot_contract.prediction_record`)."""
DeadLetters = Sequence[DeadLetter]
Pump = Callable[[], "float | None"]
"""The worker's step run on a source's intake thread (:meth:`ReadingSource.drive`):
returns the seconds until it must run again if no reading comes first, or None."""


class SourceError(RuntimeError):
    """The source could not start (broker unreachable, credentials or ACL refused)."""


class SinkError(RuntimeError):
    """A write did not certainly happen; nothing of the batch may be acknowledged. Calling
    :meth:`PredictionSink.write` again with the same batch is safe."""


@dataclass(slots=True)
class Incoming:
    """One received reading, as the source saw it.

    ``mid``, ``qos`` and ``generation`` are the source's delivery tag: what it needs to
    acknowledge this reading (for MQTT the packet id, QoS and connection it arrived on).
    """

    topic: str
    payload: bytes
    content_type: str | None
    mid: int
    qos: int
    received_ts: float
    generation: int
    """Connection it arrived on: a packet id is only meaningful on its own connection."""
    entry_id: bytes | None = None
    """Staging-stream entry id (``stream`` source only)."""
    queued_at: float = 0.0
    """When the source put it in its hand-over buffer (``time.monotonic()``; 0: unknown). A
    batch opened by this reading counts its wait from then."""
    arrived_at: float = 0.0
    """When it reached the worker, estimated (``time.monotonic()``; 0: not known): the
    readings of one socket read are spread evenly over the time their bytes waited in the
    socket. The adaptive policy times a batch this reading opens from then."""


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one batch write did."""

    stored: int
    """New predictions appended to the stream."""
    duplicates: int
    """Predictions whose reading had been stored before (redeliveries)."""
    deadletters: int
    """Dead-letter records appended."""


class BufferedIntake:
    """``pending`` and ``take`` of a source whose intake hands readings over through a
    :class:`~inference_worker.buffer.BoundedBuffer` (``self.buffer``): every source here."""

    buffer: BoundedBuffer[Incoming]

    def pending(self) -> int:
        """Readings in the hand-over buffer, not yet taken."""
        return len(self.buffer)

    def take(self, max_items: int, timeout: float, **when: Unpack[TakeWhen]) -> list[Incoming]:
        """See :meth:`ReadingSource.take` and :meth:`BoundedBuffer.take`."""
        return self.buffer.take(max_items, timeout, **when)

    def drive(self, pump: Pump | None) -> bool:
        """See :meth:`ReadingSource.drive`; a source whose intake has no thread of its own
        to lend (the in-memory one: the caller's thread feeds it) says no."""
        return False


class ReadingSource(Protocol):
    """Readings in, acknowledgements back.

    Guarantee asked of every implementation: a reading taken but not acknowledged is
    delivered again later (after a reconnect or restart), so acknowledging only after the
    store gives at-least-once.
    """

    blocked_seconds: float
    """Seconds the intake waited for room in the hand-over buffer (backpressure)."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc_info: object) -> None: ...

    def ready(self) -> bool:
        """Whether readings can arrive (connected and subscribed)."""
        ...

    def pending(self) -> int:
        """Readings received and not yet taken."""
        ...

    def take(self, max_items: int, timeout: float, **when: Unpack[TakeWhen]) -> list[Incoming]:
        """Up to ``max_items`` readings, once ``wait_for`` (keywords: :class:`TakeWhen`) are
        there or ``timeout`` seconds have passed (then whatever there is, possibly nothing);
        with ``first_within``, also once the oldest has waited that long, and not at a first
        reading alone (see :meth:`~inference_worker.buffer.BoundedBuffer.take`)."""
        ...

    def drive(self, pump: Pump | None) -> bool:
        """Run ``pump`` on the intake's own thread after each hand-over of readings, and
        again once the seconds it returned have passed with nothing received (None: stop
        doing so). Returns whether this source does: the worker then cuts, scores and
        stores batches on the thread that is awake anyway, instead of waking its own for
        each batch."""
        ...

    def ack(self, items: Iterable[Incoming]) -> int:
        """Acknowledge readings whose predictions are stored; returns how many were."""
        ...

    def unsubscribe(self, timeout: float = 5.0) -> bool:
        """Stop new readings from coming (first step of a graceful stop); returns whether
        the intake confirmed it."""
        ...

    def reply(self, topic: str, payload: bytes) -> None:
        """Send a message back towards the devices (``devices/{id}/inference``), at most
        once."""
        ...


class PredictionSink(Protocol):
    """Predictions and dead letters out, deduplicated on the reading's identity."""

    def ensure_epoch(self) -> str:
        """The stream epoch, created if this is a fresh deployment."""
        ...

    def write(self, predictions: Records, deadletters: DeadLetters, at: float) -> WriteResult:
        """Store one batch; stamps each record's ``hops.published_ts`` with ``at``.

        Raises:
            SinkError: nothing is certain; retry with the same batch.
        """
        ...

    def send(self, predictions: Records, deadletters: DeadLetters, at: float) -> None:
        """Begin storing one batch without waiting for the store's answer (:meth:`collect`
        reads it); one batch at a time.

        Raises:
            SinkError: it could not be sent; :meth:`write` it instead.
        """
        ...

    def collect(self) -> WriteResult:
        """Finish the batch :meth:`send` began.

        Raises:
            SinkError: nothing is certain; :meth:`write` the same batch.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class MemoryRegistry(Generic[T]):
    """The process-wide ``memory://<name>`` instances of one in-memory implementation, so a
    worker built from settings and the test feeding it share one object."""

    def __init__(self) -> None:
        self._items: dict[str, T] = {}
        self._lock = threading.Lock()

    def get(self, url: str, make: Callable[[], T]) -> T:
        """The instance for ``url``, made by ``make`` on first use."""
        with self._lock:
            if url not in self._items:
                self._items[url] = make()
            return self._items[url]

    def forget(self, url: str) -> None:
        """Drop ``url`` (the next :meth:`get` makes a new instance)."""
        with self._lock:
            self._items.pop(url, None)


def is_memory_url(url: str) -> bool:
    """Whether ``url`` names the in-memory implementation (``memory://<name>``)."""
    return urlsplit(url).scheme.lower() == MEMORY_SCHEME


def open_source(settings: WorkerSettings) -> ReadingSource:
    """The source ``settings.source`` and ``settings.mqtt_url`` name (not started: enter it as
    a context manager)."""
    if settings.source == "stream":
        from inference_worker.stream_source import StreamSource

        return StreamSource(settings)
    if is_memory_url(settings.mqtt_url):
        from inference_worker.memory_source import MemorySource

        return MemorySource.named(settings.mqtt_url, maxsize=settings.queue_size)
    from inference_worker.mqtt_source import MqttSource

    return MqttSource(settings)


def open_sink(settings: WorkerSettings) -> PredictionSink:
    """The sink ``settings.redis_url`` names."""
    keys = RedisKeys(settings.redis_prefix)
    if is_memory_url(settings.redis_url):
        from inference_worker.memory_sink import MemorySink

        return MemorySink.named(settings.redis_url, keys)
    from inference_worker.redis_sink import RedisSink

    return RedisSink.from_url(
        settings.redis_url,
        keys,
        stream_maxlen=settings.stream_maxlen,
        deadletter_maxlen=settings.deadletter_maxlen,
        dedup_ttl=settings.dedup_ttl,
    )
