"""One accepted WebSocket connection: its control messages in, its frames out.

Two tasks per connection: the receive loop (control messages, resumes) and the sender
(drains the :class:`ClientChannel`, heartbeats). A write that hangs is interrupted by the
hub's periodic sweep, so a stuck client only ever blocks its own sender. Once a close is
decided both stop and :func:`finish_close` gives the close handshake ``close_timeout_s``, then
aborts the connection. The states and their transitions are in :mod:`gateway.session_state`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING

import anyio
from redis.exceptions import RedisError
from starlette.websockets import WebSocket, WebSocketDisconnect

from gateway.channel import ClientChannel
from gateway.connection import connection_control
from gateway.filters import DeviceMatcher, SubscriptionFilter
from gateway.history import ResumePlan, latest_items, plan_resume
from gateway.items import encode_heartbeat, encode_predictions, id_key
from gateway.session_state import Event, SessionMachine, State
from iot_contract import (
    CloseCode,
    ContractError,
    ErrorFrame,
    PingMessage,
    RejectReason,
    SubscribedFrame,
    SubscribeMessage,
    UnsubscribeMessage,
    parse_client_message,
)

if TYPE_CHECKING:
    from gateway.auth import Principal
    from gateway.metrics import GatewayMetrics
    from gateway.resources import GatewayResources

__all__ = ["Session", "error_frame", "finish_close"]

log = logging.getLogger(__name__)
_SEND_ERRORS = (WebSocketDisconnect, OSError, RuntimeError)


def error_frame(code: str, message: str) -> str:
    """An ``error`` frame as text."""
    return ErrorFrame(code=code, message=message).model_dump_json()


class Session:
    """Serves one authenticated connection until it is closed.

    Args:
        websocket: the accepted connection.
        resources: the gateway's resources.
        principal: who the token says the client is.
        machine: the connection's state, ``IDLE`` (authenticated) on entry.
    """

    def __init__(
        self,
        websocket: WebSocket,
        resources: GatewayResources,
        principal: Principal,
        machine: SessionMachine,
    ) -> None:
        self.ws = websocket
        self.res = resources
        self.principal = principal
        self.machine = machine
        machine.expires_at = principal.expires_at
        settings = resources.settings
        self.channel = ClientChannel(limit=settings.client_queue_items, machine=machine)
        self.channel.on_close_request = self._interrupt
        self._send_scope: anyio.CancelScope | None = None

    async def run(self) -> None:
        """Serve until the client leaves or the gateway has closed the connection."""
        self.res.hub.register(self.channel)
        self.res.metrics.gauge("clients").inc()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._send_loop, tg.cancel_scope)
                await self._receive_loop()
                tg.cancel_scope.cancel()
            await finish_close(self.ws, self.machine, self.res, self.principal.subject)
        finally:
            self.res.hub.unregister(self.channel)
            self.res.metrics.gauge("clients").dec()

    # --- receiving
    async def _receive_loop(self) -> None:
        while True:
            message = await self.ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text") or message.get("bytes") or b""
            try:
                parsed = parse_client_message(data)
            except ContractError as exc:
                self.channel.push_frame(error_frame(exc.reason.value, exc.detail))
                if exc.reason in (RejectReason.OVERSIZE, RejectReason.MALFORMED):
                    self.channel.request_close(Event.BAD_MESSAGE)
                continue
            if isinstance(parsed, SubscribeMessage):
                await self._subscribe(parsed)
            elif isinstance(parsed, UnsubscribeMessage):
                self.channel.stop()
            elif isinstance(parsed, PingMessage):
                self.channel.push_frame(encode_heartbeat(self._heartbeat_id()))
            else:
                self.channel.push_frame(error_frame("invalid", "already authenticated"))

    async def _subscribe(self, msg: SubscribeMessage) -> None:
        if not self.machine.is_open:
            return
        allowed = self.principal.devices
        if allowed is not None:
            denied = [
                p for p in msg.devices if DeviceMatcher.is_literal(p) and not allowed.match(p)
            ]
            if denied:
                self.channel.push_frame(error_frame("forbidden", "device not allowed by token"))
                self.channel.request_close(Event.FORBIDDEN)
                return
        res = self.res
        flt = SubscriptionFilter(
            devices=DeviceMatcher(msg.devices),
            models=frozenset(msg.models) if msg.models else None,
            anomalies_only=msg.anomalies_only,
            allowed=allowed,
        )
        if res.hub.position is None:  # the reader has not reached Redis yet
            self.channel.push_frame(error_frame("unavailable", "stream not reachable; retry"))
            self.channel.request_close(Event.UNAVAILABLE)
            return
        position = res.hub.position
        if msg.since is not None and not msg.since.startswith(("$", "-")):
            try:
                id_key(msg.since)
            except ValueError as exc:
                self.channel.push_frame(error_frame("invalid", str(exc)))
                return
        latest_every = None if msg.latest_every_ms is None else msg.latest_every_ms / 1000
        self.channel.begin(flt, msg.coalesce, position, latest_every)
        try:
            if latest_every is not None:  # a state view: the snapshot, then ticks
                plan = ResumePlan(recovered=False, replayed_to=id_key(position))
            else:
                plan = await plan_resume(
                    res.redis,
                    res.keys,
                    since=msg.since,
                    client_epoch=msg.epoch,
                    epoch=res.reader.epoch,
                    position=position,
                    max_replay=res.settings.max_replay_items,
                )
            latest = [] if plan.recovered else await latest_items(res.redis, res.keys)
        except (RedisError, OSError) as exc:
            log.warning("resume failed: %s", exc.__class__.__name__)
            self.channel.push_frame(error_frame("unavailable", "stream not reachable; retry"))
            self.channel.request_close(Event.UNAVAILABLE)
            return
        self.channel.push_frame(
            SubscribedFrame(
                recovered=plan.recovered, epoch=res.reader.epoch, last_id=position
            ).model_dump_json()
        )
        step = res.settings.max_frame_items
        if plan.recovered:
            selected = flt.select(plan.items)
            for start in range(0, len(selected), step):
                chunk = selected[start : start + step]
                end = start + step >= len(selected)
                self.channel.push_frame(
                    encode_predictions(chunk, position if end else chunk[-1].id)
                )
        else:
            latest = flt.select(latest)
            for start in range(0, len(latest), step) or [0]:
                chunk = latest[start : start + step]
                self.channel.push_frame(encode_predictions(chunk, position, snapshot=True))
        self.channel.mark_replayed(plan.replayed_to)
        self.channel.finish_catch_up()

    # --- sending
    def _interrupt(self) -> None:
        # Only a write in progress needs cutting short; an idle sender wakes up anyway.
        if self._send_scope is not None and self.machine.send_started is not None:
            self._send_scope.cancel()

    def _heartbeat_id(self) -> str | None:
        return self.channel.position if self.channel.idle else None

    async def _send(self, text: str) -> bool:
        """Write one frame; False when the connection is gone. A write that hangs is
        interrupted by the hub's sweep (no per-write timer: this is the hot path)."""
        machine = self.machine
        machine.write_started(time.monotonic())
        ok = False
        try:
            await self.ws.send_text(text)
            ok = True
        except _SEND_ERRORS:
            return False
        finally:
            machine.write_finished(time.monotonic(), ok=ok)
        return True

    async def _send_loop(self, connection_scope: anyio.CancelScope) -> None:
        with anyio.CancelScope() as scope:  # cancelled by a close request mid-write
            self._send_scope = scope
            await self._send_frames()
        self._send_scope = None
        connection_scope.cancel()

    async def _send_frames(self) -> None:
        channel = self.channel
        machine = self.machine
        metrics = self.res.metrics
        frames = metrics.counter("frames")
        frames_predictions = frames.labels("predictions")
        frames_control = frames.labels("control")
        frames_heartbeat = frames.labels("heartbeat")
        items = metrics.counter("items")
        max_items = self.res.settings.max_frame_items
        machine.last_send = time.monotonic()
        while True:
            with anyio.move_on_after(channel.hold_for()):  # latest-state mode's next tick
                await channel.wakeup.wait()
            channel.wakeup.clear()
            if machine.closing_or_closed:
                if not machine.slow:
                    for frame in channel.drain(0).frames:  # say why before closing
                        if not await self._send(frame):
                            return
                return
            drained = channel.drain(max_items)
            for frame in drained.frames:
                if not await self._send(frame):
                    return
                frames_control.inc()
            if drained.items:
                if not await self._send(encode_predictions(drained.items, drained.last_id)):
                    return
                frames_predictions.inc()
                items.inc(len(drained.items))
            elif machine.heartbeat_due and not drained.frames:
                if not await self._send(encode_heartbeat(self._heartbeat_id())):
                    return
                frames_heartbeat.inc()
            machine.heartbeat_due = False


async def finish_close(
    websocket: WebSocket, machine: SessionMachine, res: GatewayResources, subject: str
) -> None:
    """End a connection whose loops have stopped: ``DISCONNECTED`` if the peer left, else
    (``CLOSING``) send the close frame and wait for the transport to close, together within
    ``close_timeout_s`` of the close decision; past that, abort the connection
    (``CLOSE_TIMEOUT``): a client that stops reading never lets the close frame out."""
    if machine.state is State.CLOSED:
        return
    if machine.state is not State.CLOSING:
        machine.fire(Event.DISCONNECTED, time.monotonic())
        return
    code, reason = machine.close_code or CloseCode.NORMAL, machine.close_reason
    metrics: GatewayMetrics = res.metrics
    if machine.slow:
        metrics.counter("slow_closes").inc()
    log.info("closing client %s: %s (%d)", subject, reason, code)
    control = connection_control(websocket)
    deadline = machine.close_deadline(res.settings.close_timeout_s)
    with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
        with contextlib.suppress(*_SEND_ERRORS):
            await websocket.close(code, reason)
        if control is not None:
            await control.wait_closed()
        machine.fire(Event.CLOSE_DONE, time.monotonic())
        return
    machine.fire(Event.CLOSE_TIMEOUT, time.monotonic())
    metrics.counter("aborts").inc()
    log.info(
        "aborting client %s: close not finished in %.1f s", subject, res.settings.close_timeout_s
    )
    if control is not None:
        control.abort()
