"""An in-memory :class:`~inference_worker.bus.ReadingSource`: the test double that behaves.

Readings are published into it (:meth:`MemorySource.publish`), flow through the same
bounded hand-over buffer as MQTT's, and stay *unacknowledged* until the worker acks them;
:meth:`MemorySource.redeliver` puts every unacknowledged reading back, as a broker does
after a reconnect. So the worker's run loop, ack ordering and graceful stop can be
exercised without a broker, with the same guarantee (at-least-once) as the real source.

Instances are named by URL (``memory://<name>``) in a process-wide registry, so a worker
built from settings and the test feeding it share one source.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import ClassVar, Self

from inference_worker.buffer import BoundedBuffer
from inference_worker.bus import BufferedIntake, Incoming, MemoryRegistry

__all__ = ["MemorySource"]


class MemorySource(BufferedIntake):
    """Readings in memory; overflow policy **block the publisher** (like MQTT's
    backpressure), with ``maxsize`` readings at most waiting to be taken."""

    registry: ClassVar[MemoryRegistry[MemorySource]] = MemoryRegistry()

    def __init__(self, maxsize: int = 2048) -> None:
        self.buffer: BoundedBuffer[Incoming] = BoundedBuffer(maxsize)
        self.blocked_seconds = 0.0
        self.replies: list[tuple[str, bytes]] = []
        """Messages sent back towards devices, in order."""
        self._lock = threading.Lock()
        self._unacked: dict[int, Incoming] = {}
        self._acked: list[int] = []
        self._next_mid = 1
        self._subscribed = False
        self._generation = 1

    @classmethod
    def named(cls, url: str, *, maxsize: int = 2048) -> MemorySource:
        """The source for ``memory://<name>``, created on first use."""
        return cls.registry.get(url, lambda: cls(maxsize))

    @classmethod
    def forget(cls, url: str) -> None:
        """Drop ``url`` from the registry (the next :meth:`named` makes a new source)."""
        cls.registry.forget(url)

    # --- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Self:
        self._subscribed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._subscribed = False

    # --- the producer's side ---------------------------------------------------------------
    def publish(
        self, topic: str, payload: bytes, *, content_type: str | None = None, qos: int = 1
    ) -> int:
        """Deliver one reading (blocks while the buffer is full); returns its message id.

        Raises:
            RuntimeError: nobody is subscribed (the source was not entered, or unsubscribed):
                a broker would drop the reading too, and a silent drop would hide a bug.
        """
        if not self._subscribed:
            raise RuntimeError("publish to a memory source that nobody is subscribed to")
        with self._lock:
            mid = self._next_mid
            self._next_mid += 1
            item = Incoming(
                topic,
                payload,
                content_type,
                mid,
                qos,
                time.time(),
                self._generation,
                queued_at=time.monotonic(),
            )
            if qos:
                self._unacked[mid] = item
        self.blocked_seconds += self.buffer.put(item)
        return mid

    def redeliver(self) -> int:
        """Put every unacknowledged reading back in the buffer, as a broker does on a new
        connection (acks for the old deliveries are ignored from now on); returns how many."""
        with self._lock:
            self._generation += 1
            g = self._generation
            now = time.monotonic()
            items = [
                Incoming(
                    i.topic, i.payload, i.content_type, i.mid, i.qos, i.received_ts, g, None, now
                )
                for i in self._unacked.values()
            ]
            self._unacked = {item.mid: item for item in items}
        if items:
            self.blocked_seconds += self.buffer.put_many(items)
        return len(items)

    @property
    def unacked(self) -> int:
        """Readings delivered and not yet acknowledged."""
        with self._lock:
            return len(self._unacked)

    @property
    def acked(self) -> list[int]:
        """Message ids acknowledged, in order."""
        with self._lock:
            return list(self._acked)

    # --- ReadingSource ---------------------------------------------------------------------
    def ready(self) -> bool:
        """Subscribed."""
        return self._subscribed

    def ack(self, items: Iterable[Incoming]) -> int:
        """Acknowledge readings of the current delivery; older deliveries are ignored (as
        packet ids of a previous MQTT connection are)."""
        done = 0
        with self._lock:
            for item in items:
                current = self._unacked.get(item.mid)
                if current is not None and current.generation == item.generation:
                    del self._unacked[item.mid]
                    self._acked.append(item.mid)
                    done += 1
        return done

    def unsubscribe(self, timeout: float = 5.0) -> bool:
        """Refuse further publishes."""
        self._subscribed = False
        return True

    def reply(self, topic: str, payload: bytes) -> None:
        """Record the message in :attr:`replies`."""
        with self._lock:
            self.replies.append((topic, payload))
