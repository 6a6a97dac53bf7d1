"""Real gateway processes (``iotstream gateway``) on the session's real Redis, and an asyncio
WebSocket client that records what it receives."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from iot_contract import Reading, RedisKeys
from iotstream.gateway_process import GatewayProcess
from tests.component.gateway.support import SECRET, Feeder, token
from tests.harness.pipeline import publish, reading_messages
from tests.harness.services import Service


def gateway_options(redis_url: str, keys: RedisKeys, **overrides: Any) -> dict[str, Any]:
    """Command-line settings of a test gateway."""
    options: dict[str, Any] = {
        "redis_url": redis_url,
        "redis_prefix": keys.prefix,
        "jwt_secret": SECRET,
        "models_dir": "/nonexistent-models",
        "allowed_origins": ["http://dashboard.example"],
        "read_block_ms": 200,
        "log_level": "WARNING",
    }
    options.update(overrides)
    return options


@pytest.fixture
def feeder(redis_service: Service, redis_keys: RedisKeys) -> Iterator[Feeder]:
    """Writes predictions into this test's stream the way a worker does."""
    feeder = Feeder(redis_service.url, redis_keys)
    yield feeder
    feeder.close()


@pytest.fixture
def start_gateway(
    redis_service: Service, redis_keys: RedisKeys, tmp_path: Path
) -> Iterator[Callable[..., GatewayProcess]]:
    """Starts gateway processes (stopped at the end of the test)."""
    started: list[GatewayProcess] = []

    def start(**overrides: Any) -> GatewayProcess:
        options = gateway_options(redis_service.url, redis_keys, **overrides)
        proc = GatewayProcess(tmp_path / f"gw{len(started)}", options)
        started.append(proc)
        return proc.start(timeout=30)

    yield start
    for proc in started:
        proc.stop()


@dataclass
class Received:
    """What one client got: frames in order, and the arrival time of each item."""

    frames: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    close_code: int | None = None

    @property
    def keys(self) -> list[tuple[str, int]]:
        """``(device_id, seq)`` of every item, in arrival order."""
        return [(p["device_id"], p["seq"]) for p in self.items]

    @property
    def last_id(self) -> str | None:
        """``last_id`` of the last predictions frame."""
        ids = [f["last_id"] for f in self.frames if f["type"] == "predictions"]
        return ids[-1] if ids else None

    def record(self, text: str | bytes) -> dict[str, Any]:
        """Parse and keep one frame."""
        frame: dict[str, Any] = orjson.loads(text)
        self.frames.append(frame)
        if frame["type"] == "predictions":
            now = time.time()
            self.items.extend(frame["items"])
            self.arrivals.extend(now for _ in frame["items"])
        return frame


def bearer(tok: str | None = None) -> list[Subprotocol]:
    """Subprotocols carrying a (valid by default) token."""
    return [Subprotocol("bearer"), Subprotocol(tok if tok is not None else token())]


async def open_client(url: str, **kwargs: Any) -> ClientConnection:
    """Connect with a valid token in the header."""
    kwargs.setdefault("subprotocols", bearer())
    return await connect(url, open_timeout=10, **kwargs)


async def subscribe(ws: ClientConnection, received: Received, **fields: Any) -> dict[str, Any]:
    """Send ``subscribe`` and return the ``subscribed`` frame."""
    await ws.send(orjson.dumps({"type": "subscribe", **fields}).decode())
    while True:
        frame = received.record(await ws.recv())
        if frame["type"] == "subscribed":
            return frame


async def collect(ws: ClientConnection, received: Received, n_items: int, within: float) -> None:
    """Receive until ``n_items`` items have arrived in total (or fail after ``within`` s)."""
    with anyio.fail_after(within):
        while len(received.items) < n_items:
            received.record(await ws.recv())


def stream_through_pipeline(
    ws_url: str, mosquitto: Service, readings: Sequence[Reading], client_id: str
) -> dict[tuple[str, int], dict[str, Any]]:
    """Subscribe a dashboard client at ``ws_url``, publish ``readings`` to the broker (a
    worker must be running), and return every prediction the client received, by
    ``(device_id, seq)``."""
    got = Received()

    async def main() -> None:
        async with await open_client(ws_url) as ws:
            await subscribe(ws, got)
            await anyio.to_thread.run_sync(
                lambda: publish(mosquitto, reading_messages(readings), client_id=client_id)
            )
            await collect(ws, got, len(readings), within=30)

    anyio.run(main)
    return {(p["device_id"], p["seq"]): p for p in got.items}


async def until_closed(
    ws: ClientConnection, received: Received | None = None, within: float = 10.0
) -> ConnectionClosed:
    """Read (recording into ``received``) until the server closes; return how it closed."""
    with anyio.fail_after(within):
        try:
            while True:
                text = await ws.recv()
                if received is not None:
                    received.record(text)
        except ConnectionClosed as exc:
            return exc


def metric(url: str, name: str) -> float:
    """Sum of the samples of metric ``name`` (all label sets) at ``url/metrics``."""
    text = urllib.request.urlopen(url + "/metrics").read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )
