"""A client that stops reading is cut off: closed as slow, then aborted within the close
timeout, its TCP connection gone from the server side, and counted against ``max_clients``
until then. The client is a plain socket that does the WebSocket handshake itself and then
never reads (no WebSocket library in the way)."""

from __future__ import annotations

import base64
import os
import random
import socket
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from websockets.exceptions import InvalidStatus

from iotstream.gateway_process import GatewayProcess
from tests.component.gateway.support import Feeder, prediction, token
from tests.integration.gateway.conftest import Received, metric, open_client, subscribe

pytestmark = pytest.mark.integration

CLOSE_TIMEOUT = 3.0
SLACK = 1.5
"""Polling and scheduling slack on top of the close timeout (a loaded 2-core machine)."""


def raw_subscriber(host: str, port: int) -> socket.socket:
    """Open ``/ws`` by hand (small receive buffer, bearer token in the header), send
    ``subscribe``, and return the socket; the caller never reads from it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # no autotuning
    sock.settimeout(10)
    sock.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: bearer, {token()}\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)  # byte by byte: leave any frame after the response unread
        assert chunk, "gateway closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    payload = b'{"type":"subscribe"}'
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    return sock


def server_side_sockets(server_port: int, peer_port: int) -> list[str]:
    """TCP states (hex, as in ``/proc/net/tcp``) of server-side sockets from ``server_port``
    to ``peer_port`` on loopback, orphaned ones included (what ``ss -tan`` shows)."""
    states = []
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if (
                int(local.split(":")[1], 16) == server_port
                and int(remote.split(":")[1], 16) == peer_port
            ):
                states.append(state)
    return states


def read_to_end(sock: socket.socket) -> None:
    """Read until EOF (or an error)."""
    while sock.recv(65536):
        pass


def wait_for(condition: Callable[[], bool], within: float, what: str) -> float:
    """Poll ``condition`` until true; return when it became true (monotonic)."""
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return time.monotonic()


def feed_until_slow_close(gw: GatewayProcess, feeder: Feeder) -> None:
    """Write big predictions (bounded: at most ~16 MB) until the gateway closes a client as
    slow."""
    rng = random.Random(3)
    payload = [rng.random() for _ in range(200)]  # ~4 KB per prediction
    for start in range(0, 4000, 40):
        batch = [
            prediction(f"pump-{n % 10}", n).model_copy(update={"values": payload})
            for n in range(start, start + 40)
        ]
        feeder.write(batch)
        if metric(gw.url, "iotstream_gateway_slow_closes_total") >= 1:
            return
    wait_for(
        lambda: metric(gw.url, "iotstream_gateway_slow_closes_total") >= 1,
        10,
        "the slow-consumer close",
    )


def test_client_that_stops_reading_is_aborted_within_the_close_timeout(
    start_gateway: Any, feeder: Feeder
) -> None:
    gw: GatewayProcess = start_gateway(
        client_queue_items=50,
        batch_window_ms=2,
        close_timeout_s=CLOSE_TIMEOUT,
        send_timeout_s=30,  # the queue overflow is what closes it here
        max_clients=1,
        log_level="INFO",
    )
    sock = raw_subscriber(gw.host, gw.port)
    peer_port = sock.getsockname()[1]
    try:
        wait_for(lambda: bool(server_side_sockets(gw.port, peer_port)), 5, "the server socket")
        feed_until_slow_close(gw, feeder)
        closing_seen = time.monotonic()

        # Closing, not gone yet: it still holds the only slot.
        assert server_side_sockets(gw.port, peer_port)
        assert metric(gw.url, "iotstream_gateway_connections") == 1

        async def refused() -> None:
            with pytest.raises(InvalidStatus) as exc:
                await open_client(gw.ws_url)
            assert exc.value.response.status_code == 403

        anyio.run(refused)

        gone = wait_for(
            lambda: not server_side_sockets(gw.port, peer_port),
            CLOSE_TIMEOUT + SLACK,
            "the slow client's TCP connection to disappear",
        )
        assert gone - closing_seen <= CLOSE_TIMEOUT + SLACK
        assert metric(gw.url, "iotstream_gateway_aborted_connections_total") == 1
        assert metric(gw.url, "iotstream_gateway_connections") == 0

        # The client sees the reset once it reads again (after what was buffered).
        sock.settimeout(5)
        with pytest.raises(ConnectionResetError):
            read_to_end(sock)
    finally:
        sock.close()

    # The slot is free again: a new client gets its predictions.
    async def fresh() -> None:
        received = Received()
        async with await open_client(gw.ws_url) as ws:
            await subscribe(ws, received, since="-1")

    anyio.run(fresh)
    log = gw.log_tail(lines=100_000)
    assert "slow consumer (4408)" in log and "aborting client" in log
