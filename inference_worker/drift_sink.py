"""Where a worker's drift measurements go: the Redis hash and event stream the gateway serves
(:attr:`iot_contract.RedisKeys.drift`, :attr:`iot_contract.RedisKeys.drift_events`), or
memory.

:func:`open_drift_sink` picks the implementation by the worker's Redis URL scheme, like
:func:`inference_worker.bus.open_sink`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import redis

from iot_contract import RECORD_FIELD, DriftEvent, DriftStatus, RedisKeys

__all__ = [
    "DRIFT_EVENTS_MAXLEN",
    "DriftSink",
    "DriftSinkError",
    "MemoryDriftSink",
    "RedisDriftSink",
    "open_drift_sink",
]

DRIFT_EVENTS_MAXLEN = 1000
"""Approximate cap of the drift event stream (``XADD MAXLEN ~``): events are rare (a model
starts or stops drifting), so this is months of history."""


class DriftSinkError(RuntimeError):
    """A publish did not certainly happen (the next interval publishes a fresh status)."""


class DriftSink(Protocol):
    """Takes each interval's statuses and the events it raised."""

    def publish(self, statuses: Sequence[DriftStatus], events: Sequence[DriftEvent]) -> None:
        """Store ``statuses`` (newest per model wins) and append ``events``.

        Raises:
            DriftSinkError: the store failed; nothing is retried (statuses are refreshed
                every interval; an event lost here is logged by the caller).
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class RedisDriftSink:
    """``HSET`` of each status under its model name and ``XADD`` of each event, in one
    pipelined round trip. At most once: a failed round trip is not retried."""

    def __init__(
        self, client: redis.Redis, keys: RedisKeys, events_maxlen: int = DRIFT_EVENTS_MAXLEN
    ) -> None:
        self.client = client
        self.keys = keys
        self.events_maxlen = events_maxlen

    @classmethod
    def from_url(cls, url: str, keys: RedisKeys) -> RedisDriftSink:
        """A sink with its own small connection pool to ``url``."""
        client: redis.Redis = redis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
        )
        return cls(client, keys)

    def publish(self, statuses: Sequence[DriftStatus], events: Sequence[DriftEvent]) -> None:
        """See :meth:`DriftSink.publish`."""
        if not statuses and not events:
            return
        try:
            with self.client.pipeline(transaction=False) as pipe:
                if statuses:
                    mapping: dict[Any, Any] = {s.model: s.model_dump_json() for s in statuses}
                    pipe.hset(self.keys.drift, mapping=mapping)
                for event in events:
                    pipe.xadd(
                        self.keys.drift_events,
                        {RECORD_FIELD: event.model_dump_json()},
                        maxlen=self.events_maxlen,
                        approximate=True,
                    )
                pipe.execute()
        except redis.RedisError as exc:
            raise DriftSinkError(f"{type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


class MemoryDriftSink:
    """Keeps the newest status per model and the last :data:`DRIFT_EVENTS_MAXLEN` events
    (drop oldest) in this process: for ``memory://`` workers and tests. Never fails."""

    def __init__(self) -> None:
        self.statuses: dict[str, DriftStatus] = {}
        self.events: deque[DriftEvent] = deque(maxlen=DRIFT_EVENTS_MAXLEN)

    def publish(self, statuses: Sequence[DriftStatus], events: Sequence[DriftEvent]) -> None:
        """See :meth:`DriftSink.publish`."""
        self.statuses.update((s.model, s) for s in statuses)
        self.events.extend(events)

    def close(self) -> None:
        """Nothing to release."""


def open_drift_sink(redis_url: str, keys: RedisKeys) -> DriftSink:
    """The sink ``redis_url`` names: memory for ``memory://``, else Redis."""
    if redis_url.partition("://")[0] == "memory":
        return MemoryDriftSink()
    return RedisDriftSink.from_url(redis_url, keys)
