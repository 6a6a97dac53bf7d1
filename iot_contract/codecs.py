"""Payload codecs: JSON (default) and MessagePack, chosen by the MQTT v5 content type.

A message without a content type (every MQTT 3.1.1 message, and v5 messages a 3.1.1
subscriber receives) is sniffed: a MessagePack map starts with byte 0x80-0x8f, 0xde or 0xdf,
which no JSON text does; anything else is parsed as JSON. MessagePack carries the
same fields as JSON (ArduinoJson's ``serializeMsgPack`` on an ESP32 produces it directly)
at about half the size for float vectors.

Every failure to decode, of whatever kind, is a :class:`~iot_contract.ContractError`.
"""

from __future__ import annotations

from typing import Any, Final, Protocol, TypeVar

import msgpack
from pydantic import BaseModel, ValidationError

from iot_contract.errors import ContractError, RejectReason
from iot_contract.messages import Reading

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "JSON_CONTENT_TYPE",
    "MSGPACK_CONTENT_TYPE",
    "Codec",
    "JsonCodec",
    "MsgpackCodec",
    "codec_for",
    "decode_reading",
    "encode_reading",
    "sniff_codec",
    "validation_detail",
]

JSON_CONTENT_TYPE: Final = "application/json"
MSGPACK_CONTENT_TYPE: Final = "application/msgpack"
DEFAULT_MAX_PAYLOAD: Final = 64 * 1024
"""Default cap on a payload's size in bytes, checked before any parsing."""

M = TypeVar("M", bound=BaseModel)


def validation_detail(exc: ValidationError, *, limit: int = 3) -> str:
    """Summarise a pydantic error as ``field.path: message; ...`` (values are not echoed)."""
    errors = exc.errors(include_url=False, include_input=False)
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '<message>'}: {err['msg']}"
        for err in errors[:limit]
    ]
    if len(errors) > limit:
        parts.append(f"(+{len(errors) - limit} more)")
    return "; ".join(parts)


def _contract_error(exc: ValidationError, what: str) -> ContractError:
    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0] if errors else {"type": "", "loc": ()}
    if first["type"] == "json_invalid":
        reason = RejectReason.MALFORMED
    elif tuple(first["loc"]) == ("schema_version",):
        reason = RejectReason.UNSUPPORTED_VERSION
    else:
        reason = RejectReason.INVALID
    return ContractError(reason, f"invalid {what}: {validation_detail(exc)}")


class Codec(Protocol):
    """Turns contract messages into payload bytes and back."""

    content_type: str

    def encode(self, message: BaseModel) -> bytes:
        """Serialise ``message``."""
        ...

    def decode(self, payload: bytes | bytearray, cls: type[M]) -> M:
        """Parse and validate ``payload`` as ``cls``; raise ContractError on any failure."""
        ...


class JsonCodec:
    """UTF-8 JSON; NaN/Infinity literals are refused, like any other invalid value."""

    content_type = JSON_CONTENT_TYPE

    def encode(self, message: BaseModel) -> bytes:
        """Serialise ``message`` to compact JSON, leaving out fields that are ``None``."""
        return message.__pydantic_serializer__.to_json(message, exclude_none=True)

    def decode(self, payload: bytes | bytearray, cls: type[M]) -> M:
        """Parse ``payload`` as ``cls``."""
        try:
            return cls.model_validate_json(payload)
        except ValidationError as exc:
            raise _contract_error(exc, cls.__name__) from None


class MsgpackCodec:
    """MessagePack maps with the same keys as the JSON form."""

    content_type = MSGPACK_CONTENT_TYPE

    def encode(self, message: BaseModel) -> bytes:
        """Serialise ``message`` (floats as float64, so values round-trip exactly)."""
        data = message.model_dump(mode="python", exclude_none=True)
        packed: bytes = msgpack.packb(data, use_bin_type=True)
        return packed

    def decode(self, payload: bytes | bytearray, cls: type[M]) -> M:
        """Parse ``payload`` as ``cls``."""
        try:
            data: Any = msgpack.unpackb(payload, raw=False, strict_map_key=True)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise ContractError(
                RejectReason.MALFORMED, f"not valid MessagePack: {exc.__class__.__name__}: {exc}"
            ) from None
        if not isinstance(data, dict):
            got = type(data).__name__
            raise ContractError(
                RejectReason.INVALID, f"invalid {cls.__name__}: expected a map, got {got}"
            )
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _contract_error(exc, cls.__name__) from None


_JSON: Final = JsonCodec()
_MSGPACK: Final = MsgpackCodec()
_BY_CONTENT_TYPE: Final[dict[str, Codec]] = {
    "": _JSON,
    JSON_CONTENT_TYPE: _JSON,
    "text/json": _JSON,
    MSGPACK_CONTENT_TYPE: _MSGPACK,
    "application/x-msgpack": _MSGPACK,
    "application/vnd.msgpack": _MSGPACK,
}


def sniff_codec(payload: bytes | bytearray) -> Codec:
    """The codec for a payload that came without a content type (see module docstring)."""
    if payload and (0x80 <= payload[0] <= 0x8F or payload[0] in (0xDE, 0xDF)):
        return _MSGPACK
    return _JSON


def codec_for(content_type: str | None) -> Codec:
    """The codec for an MQTT v5 content type (``None`` or empty: JSON).

    Parameters such as ``; charset=utf-8`` and letter case are ignored.

    Raises:
        ContractError: no codec speaks that content type.
    """
    key = (content_type or "").split(";", 1)[0].strip().lower()
    try:
        return _BY_CONTENT_TYPE[key]
    except KeyError:
        known = ", ".join(sorted(k for k in _BY_CONTENT_TYPE if k))
        raise ContractError(
            RejectReason.UNSUPPORTED_CONTENT_TYPE,
            f"content type {content_type[:100]!r} is not supported; use one of: {known}"
            if content_type
            else "empty content type",
        ) from None


def decode_reading(
    payload: bytes | bytearray,
    content_type: str | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_PAYLOAD,
    topic_device_id: str | None = None,
) -> Reading:
    """Decode and validate one telemetry payload.

    Args:
        payload: the MQTT message body.
        content_type: the MQTT v5 content type; ``None`` or empty: sniffed (JSON or MessagePack).
        max_bytes: payloads larger than this are refused before parsing.
        topic_device_id: the device id from the topic; the payload must name the same one.

    Raises:
        ContractError: the payload is oversize, malformed or invalid.
    """
    if len(payload) > max_bytes:
        raise ContractError(
            RejectReason.OVERSIZE, f"payload is {len(payload)} bytes; the limit is {max_bytes}"
        )
    codec = codec_for(content_type) if content_type else sniff_codec(payload)
    reading = codec.decode(payload, Reading)
    if topic_device_id is not None and reading.device_id != topic_device_id:
        raise ContractError(
            RejectReason.DEVICE_MISMATCH,
            f"payload device_id {reading.device_id!r} differs from topic's {topic_device_id!r}",
        )
    return reading


def encode_reading(reading: Reading, content_type: str | None = None) -> bytes:
    """Encode ``reading`` for the given content type (default JSON)."""
    return codec_for(content_type).encode(reading)
