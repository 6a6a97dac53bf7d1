"""Redis out: one round trip per batch, deduplicated on ``(device_id, seq)``.

A Lua script stores a batch atomically: for each prediction it sets the reading's bit in
the device's ``seen`` bitmap (:meth:`iot_contract.RedisKeys.seen`); only if the bit was 0
does it ``XADD`` the prediction (``MAXLEN ~``) and update the device's latest value. A
redelivered reading, or a retried write whose first attempt did land, adds nothing.

The script touches keys it is not given in KEYS (the per-device bitmaps), so it needs a
single Redis or a replica set, not Redis Cluster.

Delivery guarantee: when :meth:`RedisSink.write` returns, every prediction of the batch is
in the stream exactly once (per dedup window); when it raises, some or none are, and
calling it again with the same batch is safe.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any, Final

import redis

from iot_contract import RECORD_FIELD, DeadLetter, JsonCodec, Prediction, RedisKeys

__all__ = ["RedisSink", "WriteResult"]

_STORE: Final = """
-- KEYS[1] predictions stream, KEYS[2] latest hash
-- ARGV[1] stream maxlen, ARGV[2] dedup ttl, then groups of 4: seen key, bit, device id, json
local stored = 0
for i = 3, #ARGV, 4 do
  if redis.call('SETBIT', ARGV[i], ARGV[i + 1], 1) == 0 then
    redis.call('EXPIRE', ARGV[i], ARGV[2], 'NX')
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[i + 3])
    redis.call('HSET', KEYS[2], ARGV[i + 2], ARGV[i + 3])
    stored = stored + 1
  end
end
return stored
"""

_CODEC: Final = JsonCodec()


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one batch write did."""

    stored: int
    """New predictions appended to the stream."""
    duplicates: int
    """Predictions whose reading had been stored before (redeliveries)."""
    deadletters: int
    """Dead-letter records appended."""


class RedisSink:
    """Writes predictions and dead letters for one deployment (``keys.prefix``).

    Args:
        client: a redis-py client (its connection pool is shared by the caller).
        keys: key names.
        stream_maxlen: approximate cap of the predictions stream.
        deadletter_maxlen: approximate cap of the dead-letter stream.
        dedup_ttl: seconds a reading's ``seen`` bit is kept.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: RedisKeys,
        *,
        stream_maxlen: int = 1_000_000,
        deadletter_maxlen: int = 100_000,
        dedup_ttl: int = 7 * 24 * 3600,
    ) -> None:
        self.client = client
        self.keys = keys
        self.stream_maxlen = stream_maxlen
        self.deadletter_maxlen = deadletter_maxlen
        self.dedup_ttl = dedup_ttl
        self._store = client.register_script(_STORE)

    def ensure_epoch(self) -> str:
        """The stream epoch, created (``SET NX``) if this is a fresh deployment."""
        self.client.set(self.keys.epoch, secrets.token_hex(8), nx=True)
        value: Any = self.client.get(self.keys.epoch)
        return value.decode() if isinstance(value, bytes) else str(value)

    def write(
        self,
        predictions: list[Prediction],
        deadletters: list[DeadLetter],
        published_ts: float,
    ) -> WriteResult:
        """Store a batch in one round trip; stamps ``hops.published_ts``.

        Raises:
            redis.RedisError: nothing is certain; retry with the same batch.
        """
        args: list[Any] = [self.stream_maxlen, self.dedup_ttl]
        for p in predictions:
            key, bit = self.keys.seen(p.device_id, p.seq)
            stamped = p.model_copy(
                update={"hops": p.hops.model_copy(update={"published_ts": published_ts})}
            )
            args += (key, bit, p.device_id, _CODEC.encode(stamped))
        with self.client.pipeline(transaction=False) as pipe:
            if predictions:
                self._store(keys=[self.keys.predictions, self.keys.latest], args=args, client=pipe)
            for record in deadletters:
                pipe.xadd(
                    self.keys.deadletter,
                    {RECORD_FIELD: _CODEC.encode(record)},
                    maxlen=self.deadletter_maxlen,
                    approximate=True,
                )
            replies = pipe.execute()
        stored = int(replies[0]) if predictions else 0
        return WriteResult(stored, len(predictions) - stored, len(deadletters))
