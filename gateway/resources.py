"""Everything a running gateway holds, built in the app's lifespan and handed to routes as
typed lifespan state (no globals)."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import anyio
from fastapi import Depends
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import RedisError
from starlette.requests import HTTPConnection

from gateway.auth import TokenVerifier
from gateway.hub import Hub
from gateway.metrics import GatewayMetrics
from gateway.predictor import Predictor, load_predictor
from gateway.reader import StreamReader
from gateway.session_state import Event, SessionMachine, Timeouts
from gateway.settings import GatewaySettings
from iot_contract import RedisKeys

if TYPE_CHECKING:
    from iot_models.follow import FollowConfig

__all__ = ["GatewayResources", "Resources", "get_resources", "open_resources"]

log = logging.getLogger(__name__)
STATE_KEY = "gateway"


@dataclass(slots=True)
class GatewayResources:
    """The gateway's long-lived parts.

    Attributes:
        connections: every ``/ws`` connection from its upgrade request until it is gone,
            closing ones included (what ``max_clients`` limits).
    """

    settings: GatewaySettings
    keys: RedisKeys
    redis: Redis
    hub: Hub
    reader: StreamReader
    verifier: TokenVerifier
    metrics: GatewayMetrics
    predictor: Predictor | None
    dev_token: str | None
    connections: set[SessionMachine] = field(default_factory=set)


def get_resources(conn: HTTPConnection) -> GatewayResources:
    """The resources from the lifespan state (HTTP and WebSocket routes alike)."""
    resources: GatewayResources = conn.state.gateway
    return resources


Resources = Annotated[GatewayResources, Depends(get_resources)]


async def _sweep(hub: Hub, settings: GatewaySettings) -> None:
    """Send timeouts, token expiry and heartbeats for every client, from one timer."""
    period = min(1.0, settings.heartbeat_s / 2, settings.send_timeout_s / 2)
    timeouts = Timeouts(send=settings.send_timeout_s, heartbeat=settings.heartbeat_s)
    while True:
        await anyio.sleep(period)
        hub.sweep(time.monotonic(), time.time(), timeouts)


@contextlib.asynccontextmanager
async def open_resources(
    settings: GatewaySettings, metrics: GatewayMetrics
) -> AsyncIterator[GatewayResources]:
    """Connect to Redis, start the stream reader, load the REST models; undo it all on exit."""
    keys = RedisKeys(settings.redis_prefix)
    # Bounded: resumes and REST share it with the reader's blocking XREAD; callers wait for a
    # free connection (up to 10 s) instead of opening one per request.
    pool = BlockingConnectionPool.from_url(
        settings.redis_url, max_connections=settings.redis_max_connections, timeout=10
    )
    redis = Redis(connection_pool=pool)
    hub = Hub()

    def close_all() -> None:
        for channel in hub.channels:
            channel.request_close(Event.STREAM_RESET)

    reader = StreamReader(
        redis,
        keys,
        hub,
        metrics,
        count=settings.read_count,
        block_ms=settings.read_block_ms,
        batch_window=settings.batch_window_ms / 1000,
        on_reset=close_all,
    )
    verifier = TokenVerifier(settings)
    dev_token = None
    if settings.dev_mode:
        dev_token = verifier.mint(subject="dev")
        # Printed on purpose (dev mode only): the demo needs it; it is never logged.
        print(
            f"gateway dev mode: throwaway token (12 h; the dashboard fetches it itself):\n"
            f"  {dev_token}\n  dashboard: http://{settings.host}:{settings.port}/",
            flush=True,
        )
    predictor = await anyio.to_thread.run_sync(
        load_predictor,
        settings.models_dir,
        settings.default_model,
        f"gateway-{socket.gethostname()}",
        _follow_config(settings),
    )
    try:
        try:
            await reader.start()
        except (RedisError, OSError) as exc:
            log.warning("redis not reachable at start (%s); the reader keeps trying", exc)
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader.run)
            tg.start_soon(_sweep, hub, settings)
            yield GatewayResources(
                settings, keys, redis, hub, reader, verifier, metrics, predictor, dev_token
            )
            for channel in hub.channels:
                channel.request_close(Event.SHUTDOWN)
            tg.cancel_scope.cancel()
    finally:
        if predictor is not None:
            await anyio.to_thread.run_sync(predictor.close)
        await redis.aclose(close_connection_pool=True)


def _follow_config(settings: GatewaySettings) -> FollowConfig | None:
    """What the REST path follows (``GATEWAY_MODEL_STORE``), if anything."""
    if settings.model_store is None:
        return None
    from iot_models.follow import FollowConfig

    return FollowConfig(
        store=settings.model_store,
        alias=settings.model_alias,
        cache_dir=settings.model_cache_dir,
        poll_s=settings.model_poll_s,
    )
