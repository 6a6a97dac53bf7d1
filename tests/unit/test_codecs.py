"""Codecs: valid messages round-trip; malformed bytes raise ContractError and nothing else."""

from __future__ import annotations

import math

import msgpack
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iot_contract import (
    JSON_CONTENT_TYPE,
    MAX_BOOT,
    MAX_FEATURES,
    MSGPACK_CONTENT_TYPE,
    ContractError,
    DeadLetter,
    Hops,
    JsonCodec,
    ModelRef,
    MsgpackCodec,
    Prediction,
    Reading,
    RejectReason,
    codec_for,
    decode_reading,
    encode_reading,
    encode_reading_fields,
    sniff_codec,
)

CONTENT_TYPES = [None, JSON_CONTENT_TYPE, MSGPACK_CONTENT_TYPE]

finite = st.floats(allow_nan=False, allow_infinity=False)
names = st.from_regex(r"\A[A-Za-z0-9_.-]{1,64}\Z")
labels = st.text(min_size=1, max_size=64)

readings = st.builds(
    Reading,
    device_id=names,
    boot=st.none() | st.integers(0, MAX_BOOT),
    seq=st.integers(0, 2**63 - 1),
    ts=st.floats(0, 4e9, allow_nan=False),
    model=st.none() | names,
    features=st.lists(finite, min_size=1, max_size=64),
    label=st.none() | labels,
)

predictions = st.builds(
    Prediction,
    device_id=names,
    boot=st.none() | st.integers(0, MAX_BOOT),
    seq=st.integers(0, 2**63 - 1),
    model=st.builds(ModelRef, name=names, version=st.just("1"), variant=st.just("fp32")),
    score=finite,
    anomaly=st.booleans(),
    label=st.none() | labels,
    probabilities=st.none() | st.dictionaries(labels, finite, max_size=5),
    values=st.none() | st.lists(finite, max_size=4),
    truth=st.none() | labels,
    hops=st.builds(
        Hops,
        device_ts=st.floats(0, 4e9),
        received_ts=st.floats(0, 4e9),
        inferred_ts=st.floats(0, 4e9),
        published_ts=st.none() | st.floats(0, 4e9),
    ),
    worker_id=names,
)


def valid_dict(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "schema_version": 1,
        "device_id": "pump-1",
        "seq": 7,
        "ts": 1764129600.5,
        "features": [0.5, 1.0, -2.25],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}


@given(readings, st.sampled_from(CONTENT_TYPES))
def test_every_valid_reading_round_trips(reading: Reading, content_type: str | None) -> None:
    payload = encode_reading(reading, content_type)
    assert decode_reading(payload, content_type, max_bytes=1 << 20) == reading


@given(predictions, st.sampled_from([JsonCodec(), MsgpackCodec()]))
def test_every_valid_prediction_round_trips(prediction: Prediction, codec: JsonCodec) -> None:
    assert codec.decode(codec.encode(prediction), Prediction) == prediction


@given(st.binary(max_size=2048), st.sampled_from([JsonCodec(), MsgpackCodec()]))
def test_dead_letter_keeps_capped_payload_through_both_codecs(
    payload: bytes, codec: JsonCodec
) -> None:
    error = ContractError(RejectReason.MALFORMED, "x")
    record = DeadLetter.from_error(
        error, topic="devices/a/telemetry", payload=payload, received_ts=1.0, worker_id="w1"
    )
    assert record.payload == payload[:1024]
    assert record.payload_size == len(payload)
    assert codec.decode(codec.encode(record), DeadLetter) == record


@settings(max_examples=300)
@given(st.binary(max_size=512), st.sampled_from(CONTENT_TYPES))
def test_arbitrary_bytes_raise_only_contract_error(
    payload: bytes, content_type: str | None
) -> None:
    try:
        decode_reading(payload, content_type)
    except ContractError as exc:
        assert exc.detail
        assert isinstance(exc.reason, RejectReason)


@given(readings, st.sampled_from(CONTENT_TYPES), st.data())
def test_truncated_payloads_are_rejected(
    reading: Reading, content_type: str | None, data: st.DataObject
) -> None:
    payload = encode_reading(reading, content_type)
    cut = data.draw(st.integers(0, len(payload) - 1))
    with pytest.raises(ContractError) as info:
        decode_reading(payload[:cut], content_type)
    assert info.value.reason in {RejectReason.MALFORMED, RejectReason.INVALID}


def _encode_raw(obj: object, content_type: str | None) -> bytes:
    if content_type == MSGPACK_CONTENT_TYPE:
        return msgpack.packb(obj, use_bin_type=True)
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"seq": "7"}, "seq"),
        ({"seq": 7.5}, "seq"),
        ({"seq": -1}, "seq"),
        ({"seq": True}, "seq"),
        ({"boot": "7"}, "boot"),
        ({"boot": -1}, "boot"),
        ({"boot": MAX_BOOT + 1}, "boot"),
        ({"boot": True}, "boot"),
        ({"boot": 1.5}, "boot"),
        ({"ts": "now"}, "ts"),
        ({"features": [1.0, "2"]}, "features.1"),
        ({"features": [True]}, "features.0"),
        ({"features": []}, "features"),
        ({"features": "1,2,3"}, "features"),
        ({"features": [0.0] * (MAX_FEATURES + 1)}, "features"),
        ({"device_id": "a/b"}, "device_id"),
        ({"device_id": 5}, "device_id"),
        ({"device_id": ...}, "device_id"),
        ({"features": ...}, "features"),
        ({"model": "no spaces"}, "model"),
        ({"extra": 1}, "extra"),
    ],
)
def test_wrong_types_name_the_field(
    overrides: dict[str, object], field: str, content_type: str | None
) -> None:
    payload = _encode_raw(valid_dict(**overrides), content_type)
    with pytest.raises(ContractError) as info:
        decode_reading(payload, content_type, max_bytes=1 << 20)
    assert info.value.reason is RejectReason.INVALID
    assert f"{field}:" in info.value.detail


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_inf_are_rejected_in_msgpack(value: float) -> None:
    payload = msgpack.packb(valid_dict(features=[1.0, value]))
    with pytest.raises(ContractError, match=r"features\.1: Input should be a finite number"):
        decode_reading(payload, MSGPACK_CONTENT_TYPE)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_nan_and_inf_are_rejected_in_json(literal: bytes) -> None:
    payload = b'{"device_id":"d","seq":1,"ts":1,"features":[1.0,' + literal + b"]}"
    with pytest.raises(ContractError) as info:
        decode_reading(payload)
    assert info.value.reason in {RejectReason.INVALID, RejectReason.MALFORMED}


def test_nan_timestamp_is_rejected() -> None:
    with pytest.raises(ContractError, match="ts:"):
        decode_reading(msgpack.packb(valid_dict(ts=math.nan)), MSGPACK_CONTENT_TYPE)


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
@pytest.mark.parametrize("version", [0, 2, 99, "1"])
def test_unknown_schema_version_is_its_own_reason(
    version: object, content_type: str | None
) -> None:
    payload = _encode_raw(valid_dict(schema_version=version), content_type)
    with pytest.raises(ContractError) as info:
        decode_reading(payload, content_type)
    assert info.value.reason is RejectReason.UNSUPPORTED_VERSION
    assert "schema_version" in info.value.detail


def test_missing_schema_version_means_version_one() -> None:
    reading = decode_reading(orjson.dumps(valid_dict(schema_version=...)))
    assert reading.schema_version == 1


def test_oversize_is_refused_before_parsing() -> None:
    payload = b"{" + b" " * 100
    with pytest.raises(ContractError) as info:
        decode_reading(payload, max_bytes=50)
    assert info.value.reason is RejectReason.OVERSIZE
    assert "101 bytes" in info.value.detail
    assert "50" in info.value.detail


def test_non_object_payloads_are_invalid() -> None:
    with pytest.raises(ContractError, match="expected a map"):
        decode_reading(msgpack.packb([1, 2]), MSGPACK_CONTENT_TYPE)
    with pytest.raises(ContractError, match="object"):
        decode_reading(b"[1, 2]")


def test_device_id_must_match_topic() -> None:
    payload = orjson.dumps(valid_dict())
    assert decode_reading(payload, topic_device_id="pump-1").device_id == "pump-1"
    with pytest.raises(ContractError) as info:
        decode_reading(payload, topic_device_id="pump-2")
    assert info.value.reason is RejectReason.DEVICE_MISMATCH


@pytest.mark.parametrize(
    ("content_type", "codec"),
    [
        (None, JsonCodec),
        ("", JsonCodec),
        ("application/json; charset=utf-8", JsonCodec),
        ("Application/JSON", JsonCodec),
        ("application/msgpack", MsgpackCodec),
        ("application/x-msgpack", MsgpackCodec),
    ],
)
def test_codec_is_chosen_by_content_type(content_type: str | None, codec: type) -> None:
    assert isinstance(codec_for(content_type), codec)


def test_unknown_content_type_is_refused_with_the_alternatives() -> None:
    with pytest.raises(ContractError) as info:
        decode_reading(b"{}", "text/plain")
    assert info.value.reason is RejectReason.UNSUPPORTED_CONTENT_TYPE
    assert "application/json" in info.value.detail


def test_msgpack_is_smaller_than_json_for_float_vectors() -> None:
    reading = Reading(device_id="d", seq=1, ts=1.0, features=[i / 7 for i in range(16)])
    assert len(encode_reading(reading, MSGPACK_CONTENT_TYPE)) < len(encode_reading(reading))


@given(readings)
def test_payloads_without_content_type_are_sniffed(reading: Reading) -> None:
    """A 3.1.1 subscriber gets no content type: both encodings still decode."""
    for content_type in (JSON_CONTENT_TYPE, MSGPACK_CONTENT_TYPE):
        payload = encode_reading(reading, content_type)
        assert decode_reading(payload, None, max_bytes=1 << 20) == reading
        assert isinstance(sniff_codec(payload), codec_for(content_type).__class__)


@given(readings, st.sampled_from(CONTENT_TYPES))
def test_field_encoder_matches_the_model_encoder(
    reading: Reading, content_type: str | None
) -> None:
    fast = encode_reading_fields(
        reading.device_id,
        reading.seq,
        reading.ts,
        list(reading.features),
        boot=reading.boot,
        model=reading.model,
        label=reading.label,
        content_type=content_type,
    )
    assert decode_reading(fast, content_type, max_bytes=1 << 20) == reading
    assert decode_reading(fast, None, max_bytes=1 << 20) == reading
