"""Redis out: one round trip per batch, deduplicated on ``(device_id, boot, seq)``.

A Lua script stores a batch atomically: for each prediction it marks the reading in its
``seen`` slot (:meth:`iot_contract.RedisKeys.seen_slot`: a bit of the device's bitmap for this
boot, or for a boot-less reading a 32-bit fingerprint of its ``ts``); only if the slot did
not hold that mark yet does it ``XADD`` the prediction (``MAXLEN ~``) and update the
device's latest value. A redelivered reading, or a retried write whose first attempt did
land, adds nothing; a restarted device (new boot, ``seq`` from the start) adds everything.
Key names, slots and the record field all come from :mod:`iot_contract`; the script parses
none of them.

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
from typing import Any, Final

import redis

from inference_worker.bus import DeadLetters, Records, SinkError, WriteResult
from iot_contract import (
    RECORD_FIELD,
    DeadLetter,
    JsonCodec,
    PredictionRecord,
    RedisKeys,
    encode_record,
)

__all__ = ["RedisSink"]

_STORE: Final = f"""
-- KEYS[1] predictions stream, KEYS[2] latest hash
-- ARGV[1] stream maxlen, ARGV[2] dedup ttl, then groups of 5:
--   seen key, offset, ts fingerprint ('' when the reading has a boot id), device id, json
local stored = 0
for i = 3, #ARGV, 5 do
  local new
  if ARGV[i + 2] == '' then
    new = redis.call('SETBIT', ARGV[i], ARGV[i + 1], 1) == 0
  else
    local old = redis.call('BITFIELD', ARGV[i], 'SET', 'u32', '#' .. ARGV[i + 1], ARGV[i + 2])
    new = old[1] ~= tonumber(ARGV[i + 2])
  end
  if new then
    redis.call('EXPIRE', ARGV[i], ARGV[2], 'NX')
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', '{RECORD_FIELD.decode()}', ARGV[i + 4])
    redis.call('HSET', KEYS[2], ARGV[i + 3], ARGV[i + 4])
    stored = stored + 1
  end
end
return stored
"""

_CODEC: Final = JsonCodec()


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
        self._conn: Any = None
        """The connection :meth:`send` and :meth:`collect` use (out of the pool meanwhile)."""
        self._sent: tuple[int, int] | None = None
        """Predictions and dead letters of the batch sent and not yet collected."""

    @classmethod
    def from_url(cls, url: str, keys: RedisKeys, **options: Any) -> RedisSink:
        """A sink with its own connection pool to ``url`` (closed by :meth:`close`)."""
        client: redis.Redis = redis.Redis.from_url(
            url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=10
        )
        return cls(client, keys, **options)

    def close(self) -> None:
        """Close the client's connections."""
        self._drop_connection()
        self.client.close()

    def send(self, predictions: Records, deadletters: DeadLetters, at: float) -> None:
        """Send one batch's commands (the EVALSHA, the dead letters' XADDs) in one write and
        return at once; :meth:`collect` reads the replies, by when they are usually there:
        the caller does not sleep on the round trip. Raises :class:`SinkError` when they
        could not be sent (:meth:`write` the batch then)."""
        if self._sent is not None:
            raise RuntimeError("collect() the batch sent before")
        commands = self._commands(predictions, deadletters, at)
        try:
            if self._conn is None:  # first send, or after a dropped connection: a fresh or
                # restarted Redis has not seen the script yet
                self.client.script_load(_STORE)
                self._conn = self.client.connection_pool.get_connection()
            self._conn.send_packed_command(self._conn.pack_commands(commands))
        except redis.RedisError as exc:
            self._drop_connection()
            raise SinkError(f"{type(exc).__name__}: {exc}") from exc
        self._sent = (len(predictions), len(deadletters))

    def collect(self) -> WriteResult:
        """Read the replies of the batch :meth:`send` sent. Raises :class:`SinkError` when
        its outcome is not certain, a script Redis lost in a restart included: :meth:`write`
        the same batch then (the deduplication makes that safe)."""
        if self._sent is None:
            raise RuntimeError("nothing was sent")
        (n_predictions, n_deadletters), self._sent = self._sent, None
        replies: list[Any] = []
        try:
            for _ in range((1 if n_predictions else 0) + n_deadletters):
                try:
                    replies.append(self._conn.read_response())
                except redis.ResponseError as exc:  # an error reply; read the others too
                    replies.append(exc)
        except redis.RedisError as exc:
            self._drop_connection()
            raise SinkError(f"{type(exc).__name__}: {exc}") from exc
        for reply in replies:
            if isinstance(reply, Exception):
                raise SinkError(f"{type(reply).__name__}: {reply}")
        stored = int(replies[0]) if n_predictions else 0
        return WriteResult(stored, n_predictions - stored, n_deadletters)

    def _drop_connection(self) -> None:
        """Disconnect the send/collect connection (a half-read reply must not be read by
        the next command) and give it back to the pool."""
        self._sent = None
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.disconnect()
            self.client.connection_pool.release(conn)

    def ensure_epoch(self) -> str:
        """The stream epoch, created (``SET NX``) if this is a fresh deployment."""
        self.client.set(self.keys.epoch, secrets.token_hex(8), nx=True)
        value: Any = self.client.get(self.keys.epoch)
        return value.decode() if isinstance(value, bytes) else str(value)

    def write(self, predictions: Records, deadletters: DeadLetters, at: float) -> WriteResult:
        """Store a batch in one round trip; ``at`` becomes every record's
        ``hops.published_ts``. Raises :class:`SinkError` when nothing is certain (retry the
        same batch: the dedup makes that safe)."""
        try:
            return self._write(predictions, deadletters, at)
        except redis.RedisError as exc:
            raise SinkError(f"{type(exc).__name__}: {exc}") from exc

    def _write(
        self,
        predictions: Sequence[PredictionRecord],
        deadletters: Sequence[DeadLetter],
        published_ts: float,
    ) -> WriteResult:
        commands = self._commands(predictions, deadletters, published_ts)
        # EVALSHA straight in the pipeline: redis-py's Script objects would send a
        # SCRIPT EXISTS round trip before every pipeline.
        client: Any = self.client  # redis-py leaves execute_command untyped
        with client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            replies: list[Any] = pipe.execute(raise_on_error=False)
        if predictions and isinstance(replies[0], redis.exceptions.NoScriptError):
            # Redis restarted (or SCRIPT FLUSH): load the script and store the predictions
            # again; the dead letters of the pipeline did land.
            self.client.script_load(_STORE)
            replies[0] = client.execute_command(*commands[0])
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        stored = int(replies[0]) if predictions else 0
        return WriteResult(stored, len(predictions) - stored, len(deadletters))

    def _commands(
        self, predictions: Sequence[PredictionRecord], deadletters: Sequence[DeadLetter], at: float
    ) -> list[tuple[Any, ...]]:
        """One batch's commands, as :meth:`write` pipelines them and :meth:`send` writes
        them: the store script (``EVALSHA``; ARGV: the caps, then per record its dedup slot,
        mark, device and encoded record) if there are predictions, then an ``XADD`` per dead
        letter."""
        commands: list[tuple[Any, ...]] = []
        if predictions:
            args: list[Any] = [self.stream_maxlen, self.dedup_ttl]
            for record in predictions:
                slot = self.keys.seen_slot_of(record)
                mark = "" if slot.fingerprint is None else slot.fingerprint
                raw = encode_record(record, at)
                args += (slot.key, slot.offset, mark, record["device_id"], raw)
            commands.append(
                ("EVALSHA", self._sha, 2, self.keys.predictions, self.keys.latest, *args)
            )
        for letter in deadletters:
            commands.append(
                (
                    "XADD",
                    self.keys.deadletter,
                    "MAXLEN",
                    "~",
                    self.deadletter_maxlen,
                    "*",
                    RECORD_FIELD,
                    _CODEC.encode(letter),
                )
            )
        return commands
