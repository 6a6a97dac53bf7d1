"""Splitting received MQTT bytes into packets.

Pure functions, no sockets: :class:`~iot_mqtt.paho_client.WorkerClient` feeds them
whatever one ``recv`` returned. They exist because paho reads a packet with three ``recv``
calls and wraps each PUBLISH in an ``MQTTMessage`` (~25 µs per reading in the worker,
measured with py-spy); here a single read yields every complete packet in it and a PUBLISH
becomes one small tuple (:func:`~iot_mqtt.codec.decode_publish`).

Only what a subscriber receives from a broker at QoS 0/1 takes the fast path
(:class:`~iot_mqtt.codec.Publish`); everything else (CONNACK, SUBACK, PINGRESP, QoS 2, a
PUBLISH using a topic alias) comes back as :class:`Control` for paho to handle as usual.
"""

from __future__ import annotations

from typing import NamedTuple

from iot_mqtt.codec import PUBLISH, MalformedPacket, Publish, decode_publish, decode_varint

__all__ = ["Control", "MalformedPacket", "Publish", "packet_size", "split_packets"]


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
    while pos + 1 < end:
        header = data[pos]
        # One call per packet costs what the loop inlined here used to (measured: the
        # decoder is unrolled for the 2-byte lengths that real readings have).
        length, cursor = decode_varint(data, pos + 1, end)
        stop = cursor + length
        if stop > end or length < 0:
            break
        qos = (header >> 1) & 0x03
        if header & 0xF0 == PUBLISH and qos < 2:
            packets.append(
                decode_publish(data, cursor, stop, qos, v5) or Control(header, data[cursor:stop])
            )
        else:
            packets.append(Control(header, data[cursor:stop]))
        pos = stop
    return packets, pos


def packet_size(data: bytes) -> int | None:
    """Total size of the packet ``data`` starts with (fixed header included), or None while
    its remaining length has not fully arrived. Tells a reader how much to collect before
    splitting again, so a large packet arriving in many reads is joined once. Raises
    :class:`MalformedPacket` as :func:`split_packets` does."""
    length, body = decode_varint(data, 1, len(data))
    return None if length < 0 else body + length
