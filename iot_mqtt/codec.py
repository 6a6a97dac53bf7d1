"""The MQTT codec: variable byte integers and PUBLISH packets, each encoded and decoded once.

Pure functions on bytes, shared by the worker's reader (:mod:`iot_mqtt.wire`,
:mod:`iot_mqtt.paho_client`), the raw publisher (:mod:`iot_mqtt.rawpub`) and the tests.
Decoders take the buffer and positions instead of slices, so that reading a packet copies
nothing but the topic and the payload.

Only what the project needs is here: PUBLISH at QoS 0/1 as a broker sends it to a
subscriber (MQTT 3.1.1 and 5; of the MQTT 5 properties only the Content Type is read).
Everything else is paho's.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from paho.mqtt.exception import MalformedPacket

__all__ = [
    "PUBLISH",
    "MalformedPacket",
    "Publish",
    "decode_publish",
    "decode_varint",
    "encode_publish",
    "encode_varint",
    "set_dup",
]

PUBLISH: Final = 0x30
"""The PUBLISH packet type (first header byte, flags clear)."""
_DUP: Final = 0x08
_CONTENT_TYPE: Final = 0x03

# MQTT 5 properties a PUBLISH may carry, by how their value is encoded.
_FIXED_SIZE: Final = {0x01: 1, 0x02: 4, 0x23: 2}  # payload format, message expiry, topic alias
_LENGTH_PREFIXED: Final = {0x03, 0x08, 0x09}  # content type, response topic, correlation data
_SUBSCRIPTION_ID: Final = 0x0B  # variable byte integer
_USER_PROPERTY: Final = 0x26  # two length-prefixed strings


class Publish(NamedTuple):
    """A QoS 0/1 PUBLISH as the worker needs it."""

    topic: str
    payload: bytes
    content_type: str | None
    mid: int
    qos: int


def encode_varint(n: int) -> bytes:
    """MQTT's variable byte integer (remaining length, property lengths): 7 bits a byte,
    least significant first."""
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def decode_varint(data: bytes | bytearray, pos: int, end: int) -> tuple[int, int]:
    """The variable byte integer at ``data[pos:end]``: (value, position after it).

    Returns ``(-1, end)`` when ``data`` ends before the integer does (more bytes are
    still to come). Raises :class:`MalformedPacket` when it is longer than four bytes.
    """
    # Unrolled for one and two bytes (lengths up to 16 KiB: nearly every packet), which
    # makes a call cheaper than the plain loop inlined in the worker's packet splitter.
    if pos + 1 < end:
        value = data[pos]
        if value < 0x80:
            return value, pos + 1
        byte = data[pos + 1]
        if byte < 0x80:
            return (value & 0x7F) | byte << 7, pos + 2
    value = 0
    shift = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 21:
            raise MalformedPacket("variable byte integer longer than 4 bytes")
    return -1, end


def encode_publish(
    topic: bytes, payload: bytes, qos: int = 0, mid: int = 0, *, properties: bytes = b""
) -> bytes:
    """A whole PUBLISH packet (fixed header included).

    Args:
        topic: the topic name, UTF-8.
        payload: the application message.
        qos: 0, 1 or 2; ``mid`` is written for 1 and 2 only.
        mid: the packet identifier.
        properties: MQTT 5 only: the packed properties, their length first (``b"\\x00"``
            for none; paho's ``Properties.pack()`` gives this). Empty for MQTT 3.1.1.
    """
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += mid.to_bytes(2, "big")
    body += properties + payload
    return bytes([PUBLISH | qos << 1]) + encode_varint(len(body)) + body


def decode_publish(data: bytes, pos: int, stop: int, qos: int, v5: bool) -> Publish | None:
    """The QoS 0/1 PUBLISH whose variable header and payload are ``data[pos:stop]``.

    None when paho should handle it instead: malformed, or an empty topic that an MQTT 5
    topic alias stands in for. A topic that is not valid UTF-8 is decoded with
    replacement characters (the contract then refuses it).
    """
    topic_end = pos + 2 + ((data[pos] << 8) | data[pos + 1]) if stop - pos >= 2 else stop + 1
    if topic_end > stop or topic_end == pos + 2:
        return None
    topic = data[pos + 2 : topic_end].decode("utf-8", "replace")
    pos = topic_end
    mid = 0
    if qos:
        if pos + 2 > stop:
            return None
        mid = (data[pos] << 8) | data[pos + 1]
        pos += 2
    content_type = None
    if v5:
        try:
            props_len, pos = decode_varint(data, pos, stop)
        except MalformedPacket:
            return None
        props_end = pos + props_len
        if props_len < 0 or props_end > stop:
            return None
        if props_len:
            content_type = _content_type(data, pos, props_end)
        pos = props_end
    return Publish(topic, data[pos:stop], content_type, mid, qos)


def set_dup(packet: bytes) -> bytes:
    """``packet`` (a PUBLISH) with the DUP flag set, as it is sent again after a reconnect."""
    return bytes([packet[0] | _DUP]) + packet[1:]


def _content_type(data: bytes, pos: int, stop: int) -> str | None:
    """The Content Type property among the properties in ``data[pos:stop]``, if any.

    An unknown, cut or malformed property ends the scan: the reading is then decoded by
    sniffing its payload, as for an MQTT 3.1.1 publisher.
    """
    while pos < stop:
        ident = data[pos]
        pos += 1
        if ident in _FIXED_SIZE:
            pos += _FIXED_SIZE[ident]
        elif ident in _LENGTH_PREFIXED:
            if pos + 2 > stop:
                return None
            size = (data[pos] << 8) | data[pos + 1]
            if ident == _CONTENT_TYPE and pos + 2 + size <= stop:
                return data[pos + 2 : pos + 2 + size].decode("utf-8", "replace")
            pos += 2 + size
        elif ident == _SUBSCRIPTION_ID:
            try:
                value, pos = decode_varint(data, pos, stop)
            except MalformedPacket:
                return None
            if value < 0:
                return None
        elif ident == _USER_PROPERTY:
            for _ in range(2):
                if pos + 2 > stop:
                    return None
                pos += 2 + ((data[pos] << 8) | data[pos + 1])
        else:
            return None
    return None
