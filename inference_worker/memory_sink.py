"""An in-memory :class:`~inference_worker.bus.PredictionSink`.

Stores what :class:`~inference_worker.redis_sink.RedisSink` stores (the predictions stream,
the dead-letter stream, the newest prediction per device), deduplicated on the same
identity (:meth:`iot_contract.RedisKeys.seen_slot`), and can be switched off to play a store
outage (:attr:`MemorySink.down`). Delivery guarantee: like Redis's, a write either stores
the whole batch (exactly once per reading) or raises :class:`~inference_worker.bus.SinkError`
having stored nothing.

Instances are named by URL (``memory://<name>``) in a process-wide registry.
"""

from __future__ import annotations

import secrets
import threading
from typing import TYPE_CHECKING, ClassVar

from inference_worker.bus import DeadLetters, MemoryRegistry, Records, SinkError, WriteResult
from iot_contract import DeadLetter, RedisKeys

if TYPE_CHECKING:
    from iot_models.core import PredictionRecord

__all__ = ["MemorySink"]


class MemorySink:
    """Predictions kept in lists in memory (unbounded: for tests and short embedded runs)."""

    registry: ClassVar[MemoryRegistry[MemorySink]] = MemoryRegistry()

    def __init__(self, keys: RedisKeys | None = None) -> None:
        self.keys = keys or RedisKeys()
        self.predictions: list[PredictionRecord] = []
        """Stored predictions, in stream order."""
        self.deadletters: list[DeadLetter] = []
        self.latest: dict[str, PredictionRecord] = {}
        self.batches: list[int] = []
        """Size (predictions + dead letters) of each successful write."""
        self.writers: list[str] = []
        """The name of the thread that made each successful write (the run loop's own, or
        the writer thread's under load)."""
        self.down = False
        """While true every write raises :class:`SinkError` (a store outage)."""
        self.failed_writes = 0
        self._seen: dict[tuple[str, int], int] = {}
        """Dedup slots as the Redis script keeps them: a bit, or a ``ts`` fingerprint."""
        self._epoch: str | None = None
        self._lock = threading.Lock()
        self._sent: tuple[Records, DeadLetters, float] | None = None

    @classmethod
    def named(cls, url: str, keys: RedisKeys | None = None) -> MemorySink:
        """The sink for ``memory://<name>``, created on first use."""
        return cls.registry.get(url, lambda: cls(keys))

    @classmethod
    def forget(cls, url: str) -> None:
        """Drop ``url`` from the registry."""
        cls.registry.forget(url)

    def ensure_epoch(self) -> str:
        """A random epoch, made once."""
        with self._lock:
            if self._epoch is None:
                self._epoch = secrets.token_hex(8)
            return self._epoch

    def write(self, predictions: Records, deadletters: DeadLetters, at: float) -> WriteResult:
        """Store one batch, or raise :class:`SinkError` storing nothing while :attr:`down`."""
        with self._lock:
            if self.down:
                self.failed_writes += 1
                raise SinkError("memory sink is down")
            stored = 0
            for record in predictions:
                slot = self.keys.seen_slot_of(record)
                mark = 1 if slot.fingerprint is None else slot.fingerprint
                if self._seen.get((slot.key, slot.offset)) == mark:
                    continue
                self._seen[slot.key, slot.offset] = mark
                record["hops"]["published_ts"] = at
                self.predictions.append(record)
                self.latest[record["device_id"]] = record
                stored += 1
            self.deadletters.extend(deadletters)
            self.batches.append(len(predictions) + len(deadletters))
            self.writers.append(threading.current_thread().name)
            return WriteResult(stored, len(predictions) - stored, len(deadletters))

    def send(self, predictions: Records, deadletters: DeadLetters, at: float) -> None:
        """Hold the batch until :meth:`collect` (which stores it as :meth:`write` does)."""
        if self._sent is not None:
            raise RuntimeError("collect() the batch sent before")
        self._sent = (predictions, deadletters, at)

    def collect(self) -> WriteResult:
        """Store the batch :meth:`send` held; raises :class:`SinkError` while :attr:`down`."""
        if self._sent is None:
            raise RuntimeError("nothing was sent")
        sent, self._sent = self._sent, None
        return self.write(*sent)

    def close(self) -> None:
        """Nothing to release."""
