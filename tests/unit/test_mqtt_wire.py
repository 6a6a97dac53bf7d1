"""The worker's MQTT packet splitter, checked against paho's own PUBLISH decoder."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt._packet import decode_publish
from paho.mqtt.client import MQTTv5, MQTTv311
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from iot_mqtt.rawpub import encode_varint
from iot_mqtt.wire import Control, MalformedPacket, Publish, split_packets


def publish_packet(
    topic: bytes, payload: bytes, *, qos: int = 1, mid: int = 1, props: Properties | None = None
) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += mid.to_bytes(2, "big")
    if props is not None:
        body += props.pack()
    body += payload
    return bytes([0x30 | qos << 1]) + encode_varint(len(body)) + body


def v5_props(**values: object) -> Properties:
    props = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(props, name, value)
    return props


topics = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1).filter(
    lambda t: len(t.encode()) < 65536
)
short_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)

v5_properties = st.fixed_dictionaries(
    {},
    optional={
        "PayloadFormatIndicator": st.integers(0, 1),
        "MessageExpiryInterval": st.integers(0, 2**32 - 1),
        "ContentType": short_text,
        "ResponseTopic": short_text.filter(bool),
        "CorrelationData": st.binary(max_size=20),
        "SubscriptionIdentifier": st.lists(st.integers(1, 268435455), min_size=1, max_size=2),
        "UserProperty": st.lists(st.tuples(short_text, short_text), min_size=1, max_size=3),
    },
)


@given(
    topic=topics,
    payload=st.binary(max_size=300),
    qos=st.integers(0, 1),
    mid=st.integers(1, 65535),
)
def test_a_311_publish_matches_paho(topic: str, payload: bytes, qos: int, mid: int) -> None:
    data = publish_packet(topic.encode(), payload, qos=qos, mid=mid)
    packets, used = split_packets(data, v5=False)
    assert used == len(data)
    paho = decode_publish(data[0], body_of(data), MQTTv311)
    assert (paho.topic, paho.payload, paho.mid, paho.qos) == (
        topic.encode(),
        payload,
        mid if qos else 0,
        qos,
    )
    assert packets == [Publish(topic, payload, None, paho.mid, qos)]


@given(
    topic=topics,
    payload=st.binary(max_size=100),
    props=v5_properties,
    qos=st.integers(0, 1),
)
def test_a_v5_publish_yields_the_content_type_paho_reads(
    topic: str, payload: bytes, props: dict[str, object], qos: int
) -> None:
    packed = v5_props(**props)
    data = publish_packet(topic.encode(), payload, qos=qos, mid=7, props=packed)
    packets, used = split_packets(data, v5=True)
    assert used == len(data)
    paho = decode_publish(data[0], body_of(data), MQTTv5)
    assert paho.payload == payload
    assert packets == [
        Publish(topic, payload, getattr(paho.properties, "ContentType", None), paho.mid, qos)
    ]


def body_of(packet: bytes) -> bytes:
    """What follows the fixed header (paho's decoder takes that)."""
    n = 1
    while packet[n] & 0x80:
        n += 1
    return packet[n + 1 :]


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
    control = b"\x90\x03\x00\x01\x01"  # a SUBACK between the messages
    stream = control + b"".join(
        publish_packet(t.encode(), p, mid=i + 1) for i, (t, p) in enumerate(messages)
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


def test_large_remaining_lengths_and_incomplete_headers() -> None:
    big = publish_packet(b"devices/d/telemetry", b"x" * 20_000)
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
        (b"\xd0\x00", "PINGRESP"),
    ],
)
def test_what_the_fast_path_does_not_handle_goes_to_paho(data: bytes, why: str) -> None:
    packets, used = split_packets(data, v5=False)
    assert used == len(data)
    assert packets == [Control(data[0], data[2:])], why


def test_v5_properties_cut_short_go_to_paho() -> None:
    body = b"\x00\x01t" + b"\x00\x01" + b"\x09\x03"  # properties claim 9 bytes, 2 present
    data = b"\x32" + bytes([len(body)]) + body
    assert split_packets(data, v5=True)[0] == [Control(0x32, body)]


def test_an_unknown_v5_property_only_loses_the_content_type() -> None:
    props = b"\x05\x7f\x00\x00\x00\x00"  # id 0x7f is not a PUBLISH property
    body = b"\x00\x01t\x00\x02" + props + b"payload"
    data = b"\x32" + bytes([len(body)]) + body
    assert split_packets(data, v5=True)[0] == [Publish("t", b"payload", None, 2, 1)]


def test_invalid_utf8_in_a_topic_does_not_raise() -> None:
    data = publish_packet(b"devices/\xff/telemetry", b"{}")
    [packet] = split_packets(data, v5=False)[0]
    assert isinstance(packet, Publish)
    assert "\ufffd" in packet.topic
