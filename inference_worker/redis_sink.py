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

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
import redis

from iot_contract import RECORD_FIELD, DeadLetter, JsonCodec, RedisKeys
from iot_models.core import PredictionRecord

__all__ = ["RedisSink", "WriteResult"]

_STORE: Final = """
-- KEYS[1] predictions stream, KEYS[2] latest hash
-- ARGV[1] stream maxlen, ARGV[2] dedup ttl, then groups of 3: seen key, bit, json
-- (the seen key is <prefix>:seen:<device_id>:<block>; the device id is taken from it)
local stored = 0
for i = 3, #ARGV, 3 do
  if redis.call('SETBIT', ARGV[i], ARGV[i + 1], 1) == 0 then
    redis.call('EXPIRE', ARGV[i], ARGV[2], 'NX')
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', ARGV[i + 2])
    redis.call('HSET', KEYS[2], string.match(ARGV[i], ':seen:(.+):%d+$'), ARGV[i + 2])
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
        self._sha = hashlib.sha1(_STORE.encode()).hexdigest()  # noqa: S324 - Redis's script id

    def ensure_epoch(self) -> str:
        """The stream epoch, created (``SET NX``) if this is a fresh deployment."""
        self.client.set(self.keys.epoch, secrets.token_hex(8), nx=True)
        value: Any = self.client.get(self.keys.epoch)
        return value.decode() if isinstance(value, bytes) else str(value)

    def write(
        self,
        predictions: Sequence[PredictionRecord],
        deadletters: Sequence[DeadLetter],
        published_ts: float,
    ) -> WriteResult:
        """Store a batch in one round trip; stamps each record's ``hops.published_ts``.

        Args:
            predictions: records as built by :class:`iot_models.core.InferenceCore`.
            deadletters: rejected readings.
            published_ts: the write time recorded in every prediction.

        Raises:
            redis.RedisError: nothing is certain; retry with the same batch.
        """
        args: list[Any] = [self.stream_maxlen, self.dedup_ttl]
        for record in predictions:
            key, bit = self.keys.seen(record["device_id"], record["seq"])
            record["hops"]["published_ts"] = published_ts
            args += (key, bit, orjson.dumps(record))
        replies = self._execute(args, predictions, deadletters)
        if predictions and isinstance(replies[0], redis.exceptions.NoScriptError):
            # Redis restarted (or SCRIPT FLUSH): load the script and store the predictions
            # again; the dead letters of the pipeline did land.
            self.client.script_load(_STORE)
            replies[0] = self.client.evalsha(
                self._sha, 2, self.keys.predictions, self.keys.latest, *args
            )
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        stored = int(replies[0]) if predictions else 0
        return WriteResult(stored, len(predictions) - stored, len(deadletters))

    def _execute(
        self,
        args: list[Any],
        predictions: Sequence[PredictionRecord],
        deadletters: Sequence[DeadLetter],
    ) -> list[Any]:
        # EVALSHA straight in the pipeline: redis-py's Script objects would send a
        # SCRIPT EXISTS round trip before every pipeline.
        with self.client.pipeline(transaction=False) as pipe:
            if predictions:
                pipe.evalsha(self._sha, 2, self.keys.predictions, self.keys.latest, *args)
            for record in deadletters:
                pipe.xadd(
                    self.keys.deadletter,
                    {RECORD_FIELD: _CODEC.encode(record)},
                    maxlen=self.deadletter_maxlen,
                    approximate=True,
                )
            replies: list[Any] = pipe.execute(raise_on_error=False)
        return replies
