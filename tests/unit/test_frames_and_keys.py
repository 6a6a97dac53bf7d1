"""WebSocket control messages, server frames and Redis key names."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from iot_contract import (
    SEEN_BLOCK_BITS,
    AuthMessage,
    ContractError,
    PredictionsFrame,
    RedisKeys,
    RejectReason,
    SeenSlot,
    ServerFrame,
    SubscribedFrame,
    SubscribeMessage,
    UnsubscribeMessage,
    parse_client_message,
    parse_stream_id,
    ts_fingerprint,
)
from iot_contract.frames import MAX_CONTROL_MESSAGE


def test_subscribe_defaults_to_every_device_live() -> None:
    msg = parse_client_message(b'{"type": "subscribe"}')
    assert isinstance(msg, SubscribeMessage)
    assert msg.devices == ["*"]
    assert msg.since is None
    assert not msg.anomalies_only


@pytest.mark.parametrize("since", ["$", "-10", "1764129600000-0", "0-0"])
def test_since_forms_are_accepted(since: str) -> None:
    msg = parse_client_message(orjson.dumps({"type": "subscribe", "since": since}))
    assert isinstance(msg, SubscribeMessage)
    assert msg.since == since


@pytest.mark.parametrize("since", ["", "latest", "-", "1-", "-1-0", "$$", 5])
def test_bad_since_is_refused(since: object) -> None:
    with pytest.raises(ContractError, match="since"):
        parse_client_message(orjson.dumps({"type": "subscribe", "since": since}))


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        (50, True),
        (500, True),
        (10_000, True),
        (49, False),
        (10_001, False),
        ("500", False),
        (True, False),
    ],
)
def test_latest_every_ms_is_a_bounded_integer(value: object, ok: bool) -> None:
    raw = orjson.dumps({"type": "subscribe", "latest_every_ms": value})
    if ok:
        msg = parse_client_message(raw)
        assert isinstance(msg, SubscribeMessage) and msg.latest_every_ms == value
    else:
        with pytest.raises(ContractError, match="latest_every_ms"):
            parse_client_message(raw)


def test_other_client_messages_parse() -> None:
    assert isinstance(parse_client_message('{"type":"unsubscribe"}'), UnsubscribeMessage)
    auth = parse_client_message('{"type":"auth","token":"abc"}')
    assert isinstance(auth, AuthMessage)
    assert auth.token == "abc"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", RejectReason.MALFORMED),
        (b'{"type": "launch"}', RejectReason.INVALID),
        (b'{"devices": ["a"]}', RejectReason.INVALID),
        (b'{"type": "subscribe", "devices": ["a/b"]}', RejectReason.INVALID),
        (b'{"type": "subscribe", "devices": []}', RejectReason.INVALID),
        (b'{"type": "subscribe", "bogus": 1}', RejectReason.INVALID),
    ],
)
def test_bad_control_messages_raise_contract_error(raw: bytes, reason: RejectReason) -> None:
    with pytest.raises(ContractError) as info:
        parse_client_message(raw)
    assert info.value.reason is reason


def test_oversize_control_message_is_refused() -> None:
    with pytest.raises(ContractError) as info:
        parse_client_message(b" " * (MAX_CONTROL_MESSAGE + 1))
    assert info.value.reason is RejectReason.OVERSIZE


def test_server_frames_are_told_apart_by_type() -> None:
    adapter: TypeAdapter[ServerFrame] = TypeAdapter(ServerFrame)
    frame = adapter.validate_json(b'{"type":"predictions","items":[],"last_id":"1-0"}')
    assert isinstance(frame, PredictionsFrame)
    sub = adapter.validate_json(b'{"type":"subscribed","recovered":false,"epoch":"e1"}')
    assert isinstance(sub, SubscribedFrame)
    assert sub.recovered is False


def test_redis_keys_share_one_prefix() -> None:
    keys = RedisKeys("plant-3")
    assert {keys.predictions, keys.deadletter, keys.latest, keys.epoch} == {
        "plant-3:predictions",
        "plant-3:deadletter",
        "plant-3:latest",
        "plant-3:epoch",
    }
    assert RedisKeys().predictions == "iotstream:predictions"


@pytest.mark.parametrize("prefix", ["", "has space", "a{b}", "x" * 65])
def test_bad_redis_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ContractError):
        RedisKeys(prefix)


def test_stream_ids_parse() -> None:
    assert parse_stream_id("1764129600000-3") == (1764129600000, 3)
    for bad in ["1764129600000", "a-b", "$", "-5", "1-2-3"]:
        with pytest.raises(ContractError):
            parse_stream_id(bad)


def test_seen_slots_cover_every_seq_once_per_boot() -> None:
    keys = RedisKeys("p")
    assert keys.seen_slot("d1", 0, 7) == SeenSlot("p:seen:d1:7:0", 0, None)
    last = SEEN_BLOCK_BITS - 1
    assert keys.seen_slot("d1", last, 7) == SeenSlot("p:seen:d1:7:0", last, None)
    assert keys.seen_slot("d1", SEEN_BLOCK_BITS, 7) == SeenSlot("p:seen:d1:7:1", 0, None)
    assert keys.seen_slot("d1", 0, 8).key != keys.seen_slot("d1", 0, 7).key
    big = 2**63 - 1
    slot = keys.seen_slot("d1", big, 0)
    assert int(slot.key.rsplit(":", 1)[1]) * SEEN_BLOCK_BITS + slot.offset == big


def test_boot_less_slots_hold_a_fingerprint_of_ts() -> None:
    keys = RedisKeys("p")
    slot = keys.seen_slot("d1", SEEN_BLOCK_BITS + 3, None, 1764129600.25)
    assert (slot.key, slot.offset) == ("p:seen:d1:ts:1", 3)
    assert slot.fingerprint == ts_fingerprint(1764129600.25)
    assert keys.seen_slot("d1", 3, None, 1764129600.5).fingerprint != slot.fingerprint


@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_ts_fingerprints_are_32_bit_and_never_zero(ts: float) -> None:
    assert 1 <= ts_fingerprint(ts) < 2**32
    assert ts_fingerprint(ts) == ts_fingerprint(float(repr(ts)))
