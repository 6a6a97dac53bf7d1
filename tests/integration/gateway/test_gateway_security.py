"""Handshake checks on a real uvicorn: refused before accept (HTTP 403), never a crash."""

from __future__ import annotations

import base64
import time
from typing import Any

import anyio
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from iot_contract import CloseCode
from tests.component.gateway.support import SECRET, Feeder, prediction, token
from tests.integration.gateway.conftest import (
    Received,
    bearer,
    collect,
    metric,
    open_client,
    subscribe,
    until_closed,
)

pytestmark = pytest.mark.integration


def alg_none() -> str:
    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()

    claims = {"sub": "x", "aud": "iotstream-gateway", "exp": int(time.time()) + 60}
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


BAD_TOKENS = {
    "garbage": "abc.def.ghi",
    "expired": token(exp=int(time.time()) - 60),
    "wrong-aud": token(aud="another-service"),
    "alg-none": alg_none(),
    "bad-signature": token(_key="not-the-secret-" + "z" * 40),
    "no-exp": token(exp=None),
}


def test_bad_tokens_and_foreign_origin_are_refused_before_accept(
    start_gateway: Any, feeder: Feeder
) -> None:
    gw = start_gateway(auth_timeout_s=1.0, log_level="INFO")

    async def refused(**kwargs: Any) -> int:
        with pytest.raises(InvalidStatus) as info:
            async with connect(gw.ws_url, open_timeout=5, **kwargs):
                pass
        return info.value.response.status_code

    async def main() -> None:
        for name, bad in BAD_TOKENS.items():
            assert await refused(subprotocols=bearer(bad)) == 403, name
        assert await refused(subprotocols=[Subprotocol("bearer")]) == 403  # marker, no token
        assert await refused(subprotocols=bearer(), origin="http://evil.example") == 403
        # no token in the header: accepted, then 4401 when no auth message comes in time
        async with connect(gw.ws_url, open_timeout=5) as ws:
            closed = await until_closed(ws, within=5)
            assert closed.rcvd is not None and closed.rcvd.code == CloseCode.UNAUTHORIZED
        # the gateway is fine and serves a good client from an allowed origin
        got = Received()
        async with await open_client(gw.ws_url, origin="http://dashboard.example") as ws:
            await subscribe(ws, got)
            feeder.write([prediction("d1", 1)])
            await collect(ws, got, 1, within=10)

    anyio.run(main)
    assert metric(gw.url, "iotstream_gateway_auth_failures_total") == len(BAD_TOKENS) + 2
    assert metric(gw.url, "iotstream_gateway_origin_refusals_total") == 1
    assert SECRET not in gw.log_tail(200)
    for bad in BAD_TOKENS.values():
        assert bad not in gw.log_tail(200)


def test_gateway_restart_then_resume_without_gaps(start_gateway: Any, feeder: Feeder) -> None:
    gw = start_gateway()

    async def main() -> None:
        first = Received()
        async with await open_client(gw.ws_url) as ws:
            sub = await subscribe(ws, first)
            feeder.write(prediction("d1", n) for n in range(20))
            await collect(ws, first, 20, within=10)
            await anyio.to_thread.run_sync(gw.stop)
            await until_closed(ws, first)
        feeder.write(prediction("d1", n) for n in range(20, 35))  # while it is down
        await anyio.to_thread.run_sync(gw.start)
        second = Received()
        async with await open_client(gw.ws_url) as ws:
            again = await subscribe(ws, second, since=first.last_id, epoch=sub["epoch"])
            assert again["recovered"] is True
            feeder.write(prediction("d1", n) for n in range(35, 40))
            await collect(ws, second, 20, within=10)
        seqs = [s for _, s in first.keys + second.keys]
        assert seqs == list(range(40))

    anyio.run(main)


def test_oversized_client_messages_are_cut_off(start_gateway: Any, feeder: Feeder) -> None:
    gw = start_gateway()

    async def main() -> None:
        async with await open_client(gw.ws_url) as ws:
            await ws.send('{"type":"ping","pad":"' + "x" * 40_000 + '"}')
            closed = await until_closed(ws)
            assert closed.rcvd is not None and closed.rcvd.code == 1009  # message too big
        got = Received()
        async with await open_client(gw.ws_url) as ws:  # the gateway is unaffected
            await subscribe(ws, got)

    anyio.run(main)
