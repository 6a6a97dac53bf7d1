"""Splitting received MQTT bytes into packets, and PUBLISH packets into their parts.

Pure functions, no sockets: :class:`~iot_mqtt.paho_client.WorkerClient` feeds them
whatever one ``recv`` returned. They exist because paho reads a packet with three ``recv``
calls and wraps each PUBLISH in an ``MQTTMessage`` (~25 µs per reading in the worker,
measured with py-spy); here a single read yields every complete packet in it and a PUBLISH
becomes one small tuple.

Only what a subscriber receives from a broker at QoS 0/1 takes the fast path
(:class:`Publish`); everything else (CONNACK, SUBACK, PINGRESP, QoS 2, a PUBLISH using a
topic alias) comes back as :class:`Control` for paho to handle as usual.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from paho.mqtt.exception import MalformedPacket

__all__ = ["Control", "MalformedPacket", "Publish", "packet_size", "split_packets"]

_PUBLISH: Final = 0x30
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


class Control(NamedTuple):
    """Any other packet: its first header byte and its body (after the remaining length)."""

    header: int
    body: bytes


def split_packets(data: bytes, v5: bool) -> tuple[list[Publish | Control], int]:
    """Every complete packet at the start of ``data``, and how many bytes they took.

    The bytes after that offset are the start of a packet still arriving. Raises
    :class:`MalformedPacket` when a remaining length is longer than the protocol allows
    (the connection must then be dropped).
    """
    packets: list[Publish | Control] = []
    end = len(data)
    pos = 0
    while pos < end:
        header = data[pos]
        # remaining length: 1-4 bytes, 7 bits each, least significant first
        length = 0
        shift = 0
        cursor = pos + 1
        while True:
            if cursor >= end:
                return packets, pos
            byte = data[cursor]
            cursor += 1
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MalformedPacket("remaining length longer than 4 bytes")
        stop = cursor + length
        if stop > end:
            return packets, pos
        qos = (header >> 1) & 0x03
        if header & 0xF0 == _PUBLISH and qos < 2:
            packets.append(
                _publish(data, cursor, stop, qos, v5) or Control(header, data[cursor:stop])
            )
        else:
            packets.append(Control(header, data[cursor:stop]))
        pos = stop
    return packets, pos


def packet_size(data: bytes) -> int | None:
    """Total size of the packet ``data`` starts with (fixed header included), or None while
    its remaining length has not fully arrived. Tells a reader how much to collect before
    splitting again, so a large packet arriving in many reads is joined once."""
    length = 0
    for i in range(1, min(len(data), 5)):
        byte = data[i]
        length |= (byte & 0x7F) << (7 * (i - 1))
        if not byte & 0x80:
            return i + 1 + length
    return None


def _publish(data: bytes, pos: int, stop: int, qos: int, v5: bool) -> Publish | None:
    """The PUBLISH in ``data[pos:stop]``, or None when paho should handle it instead
    (malformed, or an empty topic that a topic alias stands in for)."""
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
        props_len, pos = _varint(data, pos, stop)
        props_end = pos + props_len
        if props_len < 0 or props_end > stop:
            return None
        if props_len:
            content_type = _content_type(data, pos, props_end)
        pos = props_end
    return Publish(topic, data[pos:stop], content_type, mid, qos)


def _varint(data: bytes, pos: int, stop: int) -> tuple[int, int]:
    """A variable byte integer at ``pos``: (value, position after it); value -1 if cut."""
    value = 0
    shift = 0
    while pos < stop and shift <= 21:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
    return -1, pos


def _content_type(data: bytes, pos: int, stop: int) -> str | None:
    """The Content Type property among the properties in ``data[pos:stop]``, if any.

    An unknown or cut property ends the scan: the reading is then decoded by sniffing its
    payload, as for an MQTT 3.1.1 publisher.
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
            value, pos = _varint(data, pos, stop)
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
