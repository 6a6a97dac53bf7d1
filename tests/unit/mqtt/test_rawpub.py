"""The raw load publisher's packets and PUBACK counting (no network)."""

from __future__ import annotations

from iot_mqtt.codec import Publish, decode_publish, decode_varint, encode_publish
from iot_mqtt.rawpub import RawPublisher

PINGREQ = b"\xc0\x00"


def test_qos1_publishes_are_the_codec_s_and_fill_a_window() -> None:
    pub = RawPublisher("127.0.0.1", 1, "c", max_inflight=2)
    assert pub.publish(b"devices/d/telemetry", b"{}", qos=1)
    packet = pub.inflight[1]
    assert packet == encode_publish(b"devices/d/telemetry", b"{}", 1, 1)
    length, body = decode_varint(packet, 1, len(packet))
    assert decode_publish(packet, body, body + length, 1, v5=False) == Publish(
        "devices/d/telemetry", b"{}", None, 1, 1
    )
    assert pub.publish(b"t", b"x", qos=1)
    assert sorted(pub.inflight) == [1, 2]
    assert not pub.publish(b"t", b"x", qos=1), "window of 2 is full"
    assert pub.publish(b"t", b"x", qos=0), "QoS 0 needs no window"


def test_pubacks_are_counted_in_bulk_and_across_reads() -> None:
    pub = RawPublisher("127.0.0.1", 1, "c", max_inflight=10)
    for _ in range(3):
        pub.publish(b"t", b"x", qos=1)
    stream = b"\x40\x02\x00\x01" + b"\xd0\x00" + b"\x40\x02\x00\x02" + b"\x40\x02\x00"
    assert pub.received(stream) == 2
    assert sorted(pub.inflight) == [3]
    assert pub.received(b"\x03") == 1
    assert pub.inflight == {}
    assert pub.acked == 3


def test_unknown_packet_ids_are_not_counted() -> None:
    pub = RawPublisher("127.0.0.1", 1, "c")
    assert pub.received(b"\x40\x02\x00\x09") == 0
    assert pub.acked == 0


def test_a_ping_is_queued_every_quarter_keepalive() -> None:
    pub = RawPublisher("127.0.0.1", 1, "c", keepalive=60)
    pings = []
    for now in (100.0, 110.0, 114.9, 115.0, 129.0, 130.0):
        before = pub.queued_bytes
        pub.keep_alive(now)
        pings.append(pub.queued_bytes - before == len(PINGREQ))
    assert pings == [True, False, False, True, False, True]
