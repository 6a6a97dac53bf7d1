"""Splitting received bytes into packets, in whatever pieces they arrive."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from iot_mqtt.codec import MalformedPacket, Publish, encode_publish, encode_varint
from iot_mqtt.wire import Control, packet_size, split_packets

SUBACK = b"\x90\x03\x00\x01\x01"
PINGRESP = b"\xd0\x00"


@given(
    messages=st.lists(
        st.tuples(st.text(min_size=1, max_size=40), st.binary(max_size=400)), max_size=30
    ),
    cuts=st.lists(st.integers(0, 20_000), max_size=10),
)
def test_any_read_boundaries_give_the_same_packets_in_order(
    messages: list[tuple[str, bytes]], cuts: list[int]
) -> None:
    """What the client does with each recv: split, keep the tail, prepend it next time."""
    stream = SUBACK + b"".join(
        encode_publish(t.encode(), p, 1, i + 1) for i, (t, p) in enumerate(messages)
    )
    bounds = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    got: list[Publish | Control] = []
    rest = b""
    for start, stop in itertools.pairwise(bounds):
        data = rest + stream[start:stop]
        packets, used = split_packets(data, v5=False)
        got += packets
        rest = data[used:]
    assert rest == b""
    assert got[0] == Control(0x90, b"\x00\x01\x01")
    assert got[1:] == [Publish(t, p, None, i + 1, 1) for i, (t, p) in enumerate(messages)]


def test_v5_packets_carry_their_content_type() -> None:
    props = b"\x13\x03\x00\x10application/json"
    data = encode_publish(b"t", b"{}", 1, 5, properties=props) + encode_publish(
        b"u", b"x", properties=b"\x00"
    )
    assert split_packets(data, v5=True) == (
        [Publish("t", b"{}", "application/json", 5, 1), Publish("u", b"x", None, 0, 0)],
        len(data),
    )


def test_large_remaining_lengths_and_incomplete_headers() -> None:
    big = encode_publish(b"devices/d/telemetry", b"x" * 20_000, 1, 1)
    assert big[1] & 0x80, "two-byte remaining length"
    assert split_packets(big[:1], v5=False) == ([], 0)
    assert split_packets(big[:2], v5=False) == ([], 0)
    assert split_packets(big[:-1], v5=False) == ([], 0)
    packets, used = split_packets(big + big[:3], v5=False)
    assert used == len(big) and len(packets) == 1


def test_a_remaining_length_over_four_bytes_is_malformed() -> None:
    with pytest.raises(MalformedPacket):
        split_packets(b"\x30\xff\xff\xff\xff\x01", v5=False)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\x34\x05\x00\x01t\x00\x01", "QoS 2 is paho's"),
        (b"\x32\x04\x00\x00\x00\x01", "empty topic: a v5 topic alias"),
        (b"\x32\x03\x00\x09t", "topic longer than the packet"),
        (b"\x32\x03\x00\x01t", "packet id cut off"),
        (PINGRESP, "PINGRESP"),
    ],
)
def test_what_the_fast_path_does_not_handle_goes_to_paho(data: bytes, why: str) -> None:
    packets, used = split_packets(data, v5=False)
    assert used == len(data)
    assert packets == [Control(data[0], data[2:])], why


def test_v5_properties_cut_short_go_to_paho() -> None:
    body = b"\x00\x01t" + b"\x00\x01" + b"\x09\x03"  # properties claim 9 bytes, 2 present
    data = b"\x32" + encode_varint(len(body)) + body
    assert split_packets(data, v5=True)[0] == [Control(0x32, body)]


@pytest.mark.parametrize(
    ("data", "size"),
    [
        (b"\x30", None),
        (b"\x30\x00", 2),
        (b"\x30\x80", None),
        (b"\x30\x80\x01", 131),
        (PINGRESP, 2),
        (b"\x30\xff\xff\xff\x7f", 5 + 268_435_455),
    ],
)
def test_packet_size(data: bytes, size: int | None) -> None:
    assert packet_size(data) == size
