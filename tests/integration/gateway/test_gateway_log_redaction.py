"""Tokens never reach the logs: the real gateway process at DEBUG, requests with
``?access_token=...`` on REST and on ``/ws`` (accepted, refused, failed auth), tokens in the
``Sec-WebSocket-Protocol`` header and in an ``auth`` message, then no line of its
stdout/stderr contains any of them."""

from __future__ import annotations

import http.client
import time
from typing import Any

import anyio
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from iotstream.gateway_process import GatewayProcess
from tests.component.gateway.support import Feeder, token
from tests.integration.gateway.conftest import (
    Received,
    bearer,
    open_client,
    subscribe,
    until_closed,
)

pytestmark = pytest.mark.integration


def get(gw: GatewayProcess, target: str, headers: dict[str, str] | None = None) -> int:
    conn = http.client.HTTPConnection(gw.host, gw.port, timeout=10)
    try:
        conn.request("GET", target, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_query_strings_are_redacted_from_every_log_line(start_gateway: Any, feeder: Feeder) -> None:
    gw: GatewayProcess = start_gateway(log_level="DEBUG")
    secret = token(sub="url-token-holder")
    header_token = token(sub="header-token-holder")
    message_token = token(sub="message-token-holder", _key="not-the-secret-" + "z" * 40)
    query = f"?access_token={secret}"

    assert get(gw, "/v1/devices" + query) == 401
    assert get(gw, "/v1/devices" + query, {"Authorization": f"Bearer {token()}"}) == 200
    assert get(gw, f"/v1/predictions?device=pump-1&token={secret}") == 401
    assert get(gw, "/nowhere" + query) == 404
    assert get(gw, f"/ws?{secret}") in (400, 404, 426)  # not an upgrade

    async def websockets() -> None:
        url = gw.ws_url + query
        # accepted (token in the header)
        async with await open_client(url, subprotocols=bearer(header_token)) as ws:
            await subscribe(ws, Received())
        with pytest.raises(InvalidStatus):  # refused before accept: foreign origin
            await open_client(url, origin="http://elsewhere.example")
        async with connect(url, open_timeout=10) as ws:  # auth message path, bad signature
            await ws.send(orjson.dumps({"type": "auth", "token": message_token}).decode())
            closed = await until_closed(ws)
            assert closed.rcvd is not None and closed.rcvd.code == 4401

    anyio.run(websockets)

    expected = [
        "/v1/devices?access_token=[redacted]",
        "/v1/predictions?device=pump-1&token=[redacted]",
        "/nowhere?access_token=[redacted]",
        '"WebSocket /ws?access_token=[redacted]" [accepted]',
        '"WebSocket /ws?access_token=[redacted]" 403',
    ]
    deadline = time.monotonic() + 10
    log = gw.log_tail(lines=1_000_000)
    while not all(line in log for line in expected):
        assert time.monotonic() < deadline, f"missing log lines; log:\n{log}"
        time.sleep(0.05)
        log = gw.log_tail(lines=1_000_000)
    for tok in (secret, header_token, message_token):
        _, claims, signature = tok.split(".")  # the header part is the same for all
        # truncated renderings (the WebSocket library elides long frames) leak ends only
        for piece in (claims[:16], claims[-16:], signature[:12], signature[-12:]):
            leaked = [line for line in log.splitlines() if piece in line]
            assert leaked == [], piece
