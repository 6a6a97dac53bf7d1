"""``/ws``: the live predictions WebSocket (protocol in ``docs/websocket.md``).

Before ``accept()`` the handshake is checked: the ``Origin`` against the allowlist (CORS
middleware does not cover WebSockets), the connection limit, and the bearer token when the
``Sec-WebSocket-Protocol`` header carries one (``bearer, <token>``). A refused handshake is
closed before accept, which the server answers with HTTP 403. Without a header token the
first message must be ``{"type": "auth", "token": ...}`` within ``auth_timeout_s``, else the
connection closes with 4401. Tokens are never logged and never read from the URL.

Every connection from the upgrade request until it is gone (closing ones included) counts
against ``max_clients``. Its states are in :mod:`gateway.session_state`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from urllib.parse import urlsplit

import anyio
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from gateway.auth import BEARER_SUBPROTOCOL, AuthError, Principal
from gateway.resources import GatewayResources, Resources
from gateway.session import Session, error_frame, finish_close
from gateway.session_state import Event, SessionMachine
from iot_contract import AuthMessage, CloseCode, ContractError, parse_client_message

__all__ = ["origin_allowed", "router"]

log = logging.getLogger(__name__)
router = APIRouter()


def origin_allowed(
    origin: str | None, host: str | None, allowed: list[str], missing_ok: bool
) -> bool:
    """Whether a handshake's ``Origin`` may connect.

    The gateway's own origin (``Origin`` host equal to the ``Host`` header) is always
    allowed, so the dashboard it serves works behind any name.
    """
    if origin is None:
        return missing_ok
    if "*" in allowed or origin in allowed:
        return True
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()


def _header_token(websocket: WebSocket) -> str | None:
    protocols: list[str] = list(websocket.scope.get("subprotocols") or [])
    if BEARER_SUBPROTOCOL in protocols:
        i = protocols.index(BEARER_SUBPROTOCOL)
        return protocols[i + 1] if i + 1 < len(protocols) else ""
    return None


async def _first_message_auth(websocket: WebSocket, res: GatewayResources) -> Principal | None:
    message = None
    with anyio.move_on_after(res.settings.auth_timeout_s):
        message = await websocket.receive()
    if message is None or message["type"] != "websocket.receive":
        return None
    try:
        parsed = parse_client_message(message.get("text") or message.get("bytes") or b"")
    except ContractError:
        parsed = None
    if not isinstance(parsed, AuthMessage):
        return None
    try:
        return res.verifier.verify(parsed.token)
    except AuthError:
        return None


@router.websocket("/ws")
async def live_predictions(websocket: WebSocket, res: Resources) -> None:
    """Stream predictions to one dashboard."""
    machine = SessionMachine()
    settings = res.settings
    headers = websocket.headers
    if not origin_allowed(
        headers.get("origin"),
        headers.get("host"),
        settings.allowed_origins,
        settings.allow_missing_origin,
    ):
        res.metrics.counter("origin_refusals").inc()
        await _refuse(websocket, machine)
        return
    if len(res.connections) >= settings.max_clients:
        await _refuse(websocket, machine)
        return
    res.connections.add(machine)
    res.metrics.gauge("connections").inc()
    try:
        await _serve(websocket, res, machine)
    finally:
        res.connections.discard(machine)
        res.metrics.gauge("connections").dec()


async def _refuse(websocket: WebSocket, machine: SessionMachine) -> None:
    """Close before accept: the server answers HTTP 403."""
    machine.fire(Event.REFUSE, time.monotonic())
    await websocket.close(CloseCode.FORBIDDEN)


async def _serve(websocket: WebSocket, res: GatewayResources, machine: SessionMachine) -> None:
    settings = res.settings
    token = _header_token(websocket)
    if token is not None:
        try:
            principal: Principal | None = res.verifier.verify(token)
        except AuthError:
            res.metrics.counter("auth_failures").labels("header").inc()
            await _refuse(websocket, machine)
            return
        await websocket.accept(subprotocol=BEARER_SUBPROTOCOL)
        machine.fire(Event.ACCEPT, time.monotonic())
    else:
        await websocket.accept()
        machine.fire(Event.ACCEPT_UNAUTHENTICATED, time.monotonic())
        principal = await _first_message_auth(websocket, res)
        if principal is None:
            res.metrics.counter("auth_failures").labels("message").inc()
            machine.fire(Event.AUTH_FAILED, time.monotonic())
            with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
                with anyio.move_on_after(settings.close_timeout_s):
                    await websocket.send_text(
                        error_frame("unauthorized", "a valid token is required")
                    )
            await finish_close(websocket, machine, res, "-")
            return
        machine.fire(Event.AUTHENTICATED, time.monotonic())
    if principal is not None:
        await Session(websocket, res, principal, machine).run()
