"""The raw load publisher's packet encoding and PUBACK parsing (no network)."""

from __future__ import annotations

import pytest

from iot_mqtt.rawpub import RawPublisher, encode_varint


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
        (268435455, b"\xff\xff\xff\x7f"),
    ],
)
def test_varint_matches_the_mqtt_spec_examples(n: int, encoded: bytes) -> None:
    assert encode_varint(n) == encoded


def test_qos1_publish_packet_layout_and_window() -> None:
    pub = RawPublisher("127.0.0.1", 1, "c", max_inflight=2)
    assert pub.publish(b"devices/d/telemetry", b"{}", qos=1)
    packet = pub.inflight[1]
    assert packet[0] == 0x32
    assert packet[1] == len(packet) - 2
    assert packet[2:4] == (19).to_bytes(2, "big")
    assert packet[4:23] == b"devices/d/telemetry"
    assert packet[23:25] == (1).to_bytes(2, "big")
    assert packet[25:] == b"{}"
    assert pub.publish(b"t", b"x", qos=1)
    assert not pub.publish(b"t", b"x", qos=1), "window of 2 is full"
    assert pub.publish(b"t", b"x", qos=0), "QoS 0 needs no window"


def test_pubacks_are_parsed_in_bulk_and_across_reads() -> None:
    pub = RawPublisher("127.0.0.1", 1, "c", max_inflight=10)
    for _ in range(3):
        pub.publish(b"t", b"x", qos=1)
    stream = b"\x40\x02\x00\x01" + b"\xd0\x00" + b"\x40\x02\x00\x02" + b"\x40\x02\x00"
    pub._in += stream
    assert pub._parse() == 2
    assert sorted(pub.inflight) == [3]
    pub._in += b"\x03"
    assert pub._parse() == 1
    assert pub.inflight == {}
    assert pub.acked == 3


def test_unknown_packet_ids_are_not_counted() -> None:
    pub = RawPublisher("127.0.0.1", 1, "c")
    pub._in += b"\x40\x02\x00\x09"
    assert pub._parse() == 0
