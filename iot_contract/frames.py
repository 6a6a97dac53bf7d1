"""WebSocket protocol between the gateway and dashboards (``/ws``).

Client -> server control messages (JSON text frames), told apart by ``type``:
    ``auth``         the bearer token, when the ``Sec-WebSocket-Protocol`` header can't carry it.
    ``subscribe``    what to receive: device ids or glob patterns, models, anomalies only,
                     and where to start (``since``).
    ``unsubscribe``  stop receiving.
    ``ping``         the server answers with a heartbeat.

Server -> client frames: ``subscribed`` (with ``recovered``), ``predictions`` (many items per
frame, with ``last_id`` to resume from), ``heartbeat`` and ``error``.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from iot_contract.codecs import validation_detail
from iot_contract.errors import ContractError, RejectReason
from iot_contract.messages import ModelName, Prediction

__all__ = [
    "MAX_CONTROL_MESSAGE",
    "AuthMessage",
    "ClientMessage",
    "CloseCode",
    "DevicePattern",
    "ErrorFrame",
    "HeartbeatFrame",
    "PingMessage",
    "PredictionsFrame",
    "ServerFrame",
    "Since",
    "SubscribeMessage",
    "SubscribedFrame",
    "UnsubscribeMessage",
    "parse_client_message",
]

MAX_CONTROL_MESSAGE: Final = 16 * 1024
"""Largest client control message accepted, in bytes."""

DevicePattern = Annotated[
    str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_.\-*?\[\]!]{1,64}$")
]
"""A device id or a glob over device ids (``*``, ``?``, ``[...]``)."""
StreamId = Annotated[str, StringConstraints(strict=True, pattern=r"^\d{1,20}-\d{1,20}$")]
Since = Annotated[str, StringConstraints(strict=True, pattern=r"^(\$|-\d{1,6}|\d{1,20}-\d{1,20})$")]
"""``$`` live only, ``-N`` the last N items, or a stream id: everything after it."""


class CloseCode(IntEnum):
    """WebSocket close codes the gateway uses (4000-4999 are application codes)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    """The gateway is shutting down; reconnect (with ``since``) elsewhere or later."""
    BAD_REQUEST = 4400
    """A control message could not be understood."""
    UNAUTHORIZED = 4401
    """Token missing, expired, badly signed, or for another audience."""
    FORBIDDEN = 4403
    """The token is valid but does not allow what was asked."""
    SLOW_CONSUMER = 4408
    """The client's send queue overflowed: it read too slowly. Reconnect with ``since``."""


class _Frame(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class AuthMessage(_Frame):
    """First message carrying the bearer token (never put tokens in the URL)."""

    type: Literal["auth"]
    token: Annotated[str, StringConstraints(min_length=1, max_length=8192)]


class SubscribeMessage(_Frame):
    """Replace the connection's subscription."""

    type: Literal["subscribe"]
    devices: Annotated[list[DevicePattern], Field(min_length=1, max_length=1000)] = ["*"]
    models: Annotated[list[ModelName], Field(max_length=100)] | None = None
    """Only these models' predictions; ``None`` means all."""
    anomalies_only: bool = False
    since: Since | None = None
    """Where to start; ``None`` is the same as ``$`` (live only)."""
    coalesce: bool = False
    """On overflow keep the newest item per device instead of closing with SLOW_CONSUMER."""
    epoch: Annotated[str, StringConstraints(strict=True, max_length=128)] | None = None
    """The ``epoch`` of the ``subscribed`` frame ``since`` came from; if the stream has been
    reset since, the resume answers ``recovered: false`` (omitted: not checked)."""
    latest_every_ms: Annotated[int, Field(strict=True, ge=50, le=10_000)] | None = None
    """Latest-state mode (for fleet views): a snapshot of the newest prediction per device,
    then at most one ``predictions`` frame every this many ms with the newest prediction of
    each device that reported since the previous one. ``since`` and ``coalesce`` are then
    ignored (the answer is ``recovered: false``: a state view has nothing to resume)."""


class UnsubscribeMessage(_Frame):
    """Stop receiving predictions (the connection stays open)."""

    type: Literal["unsubscribe"]


class PingMessage(_Frame):
    """Ask for a heartbeat."""

    type: Literal["ping"]


ClientMessage = Annotated[
    AuthMessage | SubscribeMessage | UnsubscribeMessage | PingMessage, Field(discriminator="type")
]
_CLIENT_ADAPTER: Final[TypeAdapter[ClientMessage]] = TypeAdapter(ClientMessage)


def parse_client_message(data: str | bytes) -> ClientMessage:
    """Parse one control message.

    Raises:
        ContractError: oversize, not JSON, unknown ``type`` or invalid fields.
    """
    if len(data) > MAX_CONTROL_MESSAGE:
        raise ContractError(
            RejectReason.OVERSIZE,
            f"control message is {len(data)} bytes; the limit is {MAX_CONTROL_MESSAGE}",
        )
    try:
        return _CLIENT_ADAPTER.validate_json(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]["type"] if exc.errors() else ""
        reason = RejectReason.MALFORMED if first == "json_invalid" else RejectReason.INVALID
        raise ContractError(reason, f"invalid control message: {validation_detail(exc)}") from None


class SubscribedFrame(_Frame):
    """Answer to ``subscribe``."""

    type: Literal["subscribed"] = "subscribed"
    recovered: bool
    """``True``: every item after ``since`` follows. ``False``: ``since`` was older than the
    stream keeps or from another epoch; the latest prediction per device follows instead."""
    epoch: str
    """Stream epoch; a different value than before means old ``last_id`` values are void."""
    last_id: StreamId | None = None


class PredictionsFrame(_Frame):
    """A batch of predictions, in stream order."""

    type: Literal["predictions"] = "predictions"
    items: list[Prediction]
    last_id: StreamId | None
    """Stream id of the last item; resume with ``since`` = this value."""
    snapshot: bool = False
    """``True`` for the latest-value-per-device catch-up after ``recovered: false``."""
    sent_ts: float | None = None
    """When the gateway sent the frame (epoch seconds), for the gateway -> browser hop."""


class HeartbeatFrame(_Frame):
    """Sent when idle, so both sides know the connection is alive."""

    type: Literal["heartbeat"] = "heartbeat"
    ts: float
    last_id: StreamId | None = None


class ErrorFrame(_Frame):
    """A problem with the client's last message; the connection stays open unless closed."""

    type: Literal["error"] = "error"
    code: str
    message: str


ServerFrame = Annotated[
    SubscribedFrame | PredictionsFrame | HeartbeatFrame | ErrorFrame, Field(discriminator="type")
]
