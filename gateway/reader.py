"""The one stream reader of a gateway process: XREAD BLOCK from the last id, publish each
batch to the :class:`~gateway.hub.Hub` once.

Adaptive tick: when the stream has been quiet for ``batch_window`` the next entry is
published the moment XREAD returns it; while entries keep coming, reads are spaced at least
``batch_window`` apart so each fan-out round carries more items (fewer, bigger frames).
When the gateway is saturated, rounds stretch by themselves, so frames grow with load.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

from gateway.history import stream_bounds
from gateway.hub import Hub
from gateway.items import StreamItem, parse_entry
from gateway.metrics import GatewayMetrics
from iot_contract import RedisKeys

__all__ = ["StreamReader", "ensure_epoch"]

log = logging.getLogger(__name__)


async def ensure_epoch(redis: Redis, keys: RedisKeys) -> str:
    """The stream's epoch token, created (SET NX) if nobody has yet."""
    await redis.set(keys.epoch, secrets.token_hex(8), nx=True)
    value = await redis.get(keys.epoch)
    return value.decode() if isinstance(value, bytes) else str(value)


class StreamReader:
    """Reads ``{prefix}:predictions`` and feeds the hub.

    Args:
        redis: a client with ``decode_responses=False``.
        keys: the deployment's key names.
        hub: where batches go.
        metrics: read counters and the XREAD lag histogram.
        count: most entries per XREAD.
        block_ms: XREAD BLOCK timeout (the epoch is re-checked after each idle timeout).
        batch_window: seconds between fan-out rounds while entries keep coming.
        on_reset: called when the epoch changes (the stream was reset; offsets are void).
    """

    def __init__(
        self,
        redis: Redis,
        keys: RedisKeys,
        hub: Hub,
        metrics: GatewayMetrics,
        *,
        count: int,
        block_ms: int,
        batch_window: float,
        on_reset: Callable[[], None] | None = None,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._hub = hub
        self._metrics = metrics
        self._count = count
        self._block_ms = block_ms
        self._window = batch_window
        self._on_reset = on_reset
        self.epoch = ""
        self.last_id = "0-0"
        self.healthy = False
        self.started = False

    async def start(self) -> None:
        """Read the epoch and the stream's current end; the hub starts from there."""
        self.epoch = await ensure_epoch(self._redis, self._keys)
        bounds = await stream_bounds(self._redis, self._keys)
        self.last_id = "{}-{}".format(*bounds.last_generated)
        self._hub.position = self.last_id
        self.healthy = True
        self.started = True

    async def run(self) -> None:
        """Read until cancelled; Redis errors are logged and retried with backoff."""
        delay = 0.1
        while True:
            try:
                if not self.started:
                    await self.start()
                await self._loop()
            except (RedisError, OSError) as exc:
                self.healthy = False
                self._metrics.counter("reader_errors").inc()
                log.warning("stream reader: %s; retrying in %.1fs", exc.__class__.__name__, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 5.0)
                if self.started:
                    try:
                        await self._check_epoch()
                        delay = 0.1
                    except (RedisError, OSError):
                        continue

    async def _loop(self) -> None:
        last_round = 0.0
        key = self._keys.predictions
        while True:
            wait = last_round + self._window - time.monotonic()
            if wait > 0:
                await anyio.sleep(wait)
            response: Any = await self._redis.xread(
                {key: self.last_id}, count=self._count, block=self._block_ms
            )
            self.healthy = True
            if not response:
                await self._check_epoch()
                continue
            entries = response[0][1]
            items: list[StreamItem] = []
            for sid, fields in entries:
                item = parse_entry(sid, fields)
                if item is None:
                    self._metrics.counter("bad_records").inc()
                else:
                    items.append(item)
            last = entries[-1][0]
            self.last_id = last.decode() if isinstance(last, bytes) else str(last)
            self._metrics.counter("reads").inc()
            self._metrics.counter("read_items").inc(len(items))
            ms = int(self.last_id.partition("-")[0])
            self._metrics.histogram("read_lag").observe(max(0.0, time.time() - ms / 1000))
            drops = self._hub.coalesced_drops
            self._hub.publish(items, self.last_id)
            if self._hub.coalesced_drops != drops:
                self._metrics.counter("drops").inc(self._hub.coalesced_drops - drops)
            last_round = time.monotonic()

    async def _check_epoch(self) -> None:
        epoch = await ensure_epoch(self._redis, self._keys)
        if epoch != self.epoch:
            log.warning("stream epoch changed: offsets are void, clients must resubscribe")
            self.epoch = epoch
            # Every client is closed and resubscribes (recovered: false + snapshot), so the
            # reader restarts from the stream's current end.
            bounds = await stream_bounds(self._redis, self._keys)
            self.last_id = "{}-{}".format(*bounds.last_generated)
            self._hub.position = self.last_id
            if self._on_reset is not None:
                self._on_reset()
