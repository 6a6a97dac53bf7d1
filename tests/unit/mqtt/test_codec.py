"""The MQTT codec, checked against paho's own implementation (an independent one)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt._packet import PublishPacket
from paho.mqtt._packet import decode_publish as paho_decode_publish
from paho.mqtt.client import MQTTv5, MQTTv311
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers

from iot_mqtt.codec import (
    MalformedPacket,
    Publish,
    decode_publish,
    decode_varint,
    encode_publish,
    encode_varint,
    set_dup,
)

VARINT_MAX = 268_435_455

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
        "SubscriptionIdentifier": st.lists(st.integers(1, VARINT_MAX), min_size=1, max_size=2),
        "UserProperty": st.lists(st.tuples(short_text, short_text), min_size=1, max_size=3),
    },
)


def packed(**values: object) -> bytes:
    """MQTT 5 PUBLISH properties as paho packs them (their length first)."""
    props = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(props, name, value)
    return bytes(props.pack())


def decode_whole(packet: bytes, v5: bool) -> Publish | None:
    """Our decoder over a whole packet, fixed header included."""
    length, body = decode_varint(packet, 1, len(packet))
    assert body + length == len(packet)
    return decode_publish(packet, body, len(packet), (packet[0] >> 1) & 3, v5)


def paho_decode(packet: bytes, protocol: MQTTProtocolVersion) -> PublishPacket:
    """paho's decoder over a whole packet (it takes what follows the fixed header)."""
    _length, size = VariableByteIntegers.decode(packet[1:])
    return paho_decode_publish(packet[0], packet[1 + size :], protocol)


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
        (2097151, b"\xff\xff\x7f"),
        (2097152, b"\x80\x80\x80\x01"),
        (VARINT_MAX, b"\xff\xff\xff\x7f"),
    ],
)
def test_varints_match_the_mqtt_spec_examples(n: int, encoded: bytes) -> None:
    assert encode_varint(n) == encoded
    assert decode_varint(b"\x30" + encoded + b"rest", 1, 5 + len(encoded)) == (n, 1 + len(encoded))


@given(st.integers(0, VARINT_MAX))
def test_varints_agree_with_paho(n: int) -> None:
    encoded = encode_varint(n)
    assert encoded == VariableByteIntegers.encode(n)
    assert decode_varint(encoded, 0, len(encoded)) == (n, len(encoded))
    assert VariableByteIntegers.decode(encoded) == (n, len(encoded))


@given(st.integers(128, VARINT_MAX), st.data())
def test_a_cut_varint_asks_for_more(n: int, data: st.DataObject) -> None:
    encoded = encode_varint(n)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    assert decode_varint(encoded + b"more", 0, cut) == (-1, cut)


def test_a_varint_over_four_bytes_is_malformed() -> None:
    with pytest.raises(MalformedPacket):
        decode_varint(b"\xff\xff\xff\xff\x01", 0, 5)


@given(
    topic=topics,
    payload=st.binary(max_size=300),
    qos=st.integers(0, 1),
    mid=st.integers(1, 65535),
)
def test_a_311_publish_matches_paho(topic: str, payload: bytes, qos: int, mid: int) -> None:
    data = encode_publish(topic.encode(), payload, qos, mid)
    paho = paho_decode(data, MQTTv311)
    expected_mid = mid if qos else 0
    assert (paho.topic, paho.payload, paho.mid, paho.qos) == (
        topic.encode(),
        payload,
        expected_mid,
        qos,
    )
    assert decode_whole(data, v5=False) == Publish(topic, payload, None, expected_mid, qos)


@given(topic=topics, payload=st.binary(max_size=100), props=v5_properties, qos=st.integers(0, 1))
def test_a_v5_publish_yields_the_content_type_paho_reads(
    topic: str, payload: bytes, props: dict[str, object], qos: int
) -> None:
    data = encode_publish(topic.encode(), payload, qos, 7, properties=packed(**props))
    paho = paho_decode(data, MQTTv5)
    assert paho.payload == payload
    content_type = getattr(paho.properties, "ContentType", None)
    assert decode_whole(data, v5=True) == Publish(topic, payload, content_type, paho.mid, qos)


def test_the_dup_flag_is_what_paho_reads() -> None:
    data = set_dup(encode_publish(b"t", b"x", 1, 3))
    assert paho_decode(data, MQTTv311).dup
    assert decode_whole(data, v5=False) == Publish("t", b"x", None, 3, 1)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"\x00\x00\x00\x01", "empty topic: a v5 topic alias"),
        (b"\x00\x09t", "topic longer than the packet"),
        (b"\x00\x01t", "packet id cut off"),
        (b"\x00", "topic length cut off"),
    ],
)
def test_what_the_decoder_leaves_to_paho(body: bytes, why: str) -> None:
    assert decode_publish(b"\x32" + body, 1, 1 + len(body), 1, v5=False) is None, why


@pytest.mark.parametrize(
    ("props", "why"),
    [
        (b"\x09\x03", "properties claim 9 bytes, 2 present"),
        (b"\xff\xff\xff\xff\x01", "property length over four bytes"),
    ],
)
def test_v5_properties_cut_short_go_to_paho(props: bytes, why: str) -> None:
    body = b"\x00\x01t\x00\x01" + props
    assert decode_publish(body, 0, len(body), 1, v5=True) is None, why


@pytest.mark.parametrize(
    ("props", "why"),
    [
        (b"\x05\x7f\x00\x00\x00\x00", "id 0x7f is not a PUBLISH property"),
        (b"\x05\x0b\xff\xff\xff\xff", "subscription identifier over four bytes"),
        (b"\x03\x26\x00\x05", "user property cut short"),
    ],
)
def test_a_property_it_cannot_read_only_loses_the_content_type(props: bytes, why: str) -> None:
    body = b"\x00\x01t\x00\x02" + props + b"payload"
    assert decode_publish(body, 0, len(body), 1, v5=True) == Publish("t", b"payload", None, 2, 1), (
        why
    )


def test_invalid_utf8_in_a_topic_does_not_raise() -> None:
    packet = decode_whole(encode_publish(b"devices/\xff/telemetry", b"{}", 1, 1), v5=False)
    assert packet is not None
    assert "\ufffd" in packet.topic
