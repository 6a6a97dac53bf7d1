"""The contract's fast encoders (:mod:`iot_contract.fast`) against the pydantic models they
stand in for: each fast output must validate as its model, give the same values as the
model built independently from the same inputs, and keep the model's field order."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from iot_contract import (
    MAX_BOOT,
    MSGPACK_CONTENT_TYPE,
    HeartbeatFrame,
    Hops,
    JsonCodec,
    ModelRef,
    MsgpackCodec,
    Prediction,
    PredictionsFrame,
    Reading,
    decode_reading,
    fast,
)
from iot_models.model import Output
from tests.unit.test_codecs import CONTENT_TYPES, finite, labels, names, predictions, readings

JSON = JsonCodec()
timestamps = st.floats(0, 4e9)
stream_ids = st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)).map(
    lambda t: f"{t[0]}-{t[1]}"
)
outputs = st.builds(
    Output,
    score=finite,
    anomaly=st.booleans(),
    label=st.none() | labels,
    probabilities=st.none() | st.dictionaries(labels, finite, max_size=5),
    values=st.none() | st.lists(finite, max_size=4).map(tuple),
)
model_refs = st.builds(
    ModelRef, name=names, version=st.just("3"), variant=st.sampled_from(["fp32", "int8-x86_64"])
)


def _keys(data: bytes) -> list[str]:
    parsed: dict[str, Any] = orjson.loads(data)
    return list(parsed)


@given(readings, st.sampled_from(CONTENT_TYPES))
def test_reading_fields_encode_like_the_reading_model(
    reading: Reading, content_type: str | None
) -> None:
    encoded = fast.encode_reading_fields(
        reading.device_id,
        reading.seq,
        reading.ts,
        list(reading.features),
        boot=reading.boot,
        model=reading.model,
        label=reading.label,
        content_type=content_type,
    )
    assert decode_reading(encoded, content_type, max_bytes=1 << 20) == reading
    if content_type == MSGPACK_CONTENT_TYPE:
        assert MsgpackCodec().decode(encoded, Reading) == reading
    else:
        assert _keys(encoded) == _keys(JSON.encode(reading))


@given(readings, model_refs, outputs, timestamps, timestamps, names, st.none() | timestamps)
def test_prediction_records_are_the_prediction_model(
    reading: Reading,
    ref: ModelRef,
    out: Output,
    received_ts: float,
    inferred_ts: float,
    worker_id: str,
    published_ts: float | None,
) -> None:
    record = fast.prediction_record(
        reading,
        ref.model_dump(),
        out,
        received_ts=received_ts,
        inferred_ts=inferred_ts,
        worker_id=worker_id,
    )
    raw = fast.encode_record(record, published_ts)
    expected = Prediction(
        device_id=reading.device_id,
        boot=reading.boot,
        seq=reading.seq,
        model=ref,
        score=out.score,
        anomaly=out.anomaly,
        label=out.label,
        probabilities=out.probabilities,
        values=None if out.values is None else list(out.values),
        truth=reading.label,
        hops=Hops(
            device_ts=reading.ts,
            received_ts=received_ts,
            inferred_ts=inferred_ts,
            published_ts=published_ts,
        ),
        worker_id=worker_id,
    )
    assert Prediction.model_validate(record) == expected
    assert JSON.decode(raw, Prediction) == expected
    assert raw == orjson.dumps(record)
    assert _keys(raw) == _keys(JSON.encode(expected))
    assert list(orjson.loads(raw)["hops"]) == list(orjson.loads(JSON.encode(expected))["hops"])


@given(predictions)
def test_prediction_head_reads_the_filter_fields(prediction: Prediction) -> None:
    head = fast.read_prediction_head(JSON.encode(prediction))
    assert head == (prediction.device_id, prediction.model.name, prediction.anomaly)


@given(st.binary(max_size=64) | st.sampled_from([b"[]", b"{}", b'{"device_id":1}', b"null"]))
def test_prediction_head_refuses_what_is_not_a_prediction(raw: bytes) -> None:
    head = fast.read_prediction_head(raw)
    assert head is None or isinstance(head[0], str)


@given(
    st.lists(predictions, max_size=5),
    st.none() | stream_ids,
    st.booleans(),
    st.none() | timestamps,
)
def test_predictions_frames_are_the_frame_model(
    items: list[Prediction], last_id: str | None, snapshot: bool, sent_ts: float | None
) -> None:
    text = fast.encode_predictions_frame(
        [JSON.encode(p) for p in items], last_id, snapshot=snapshot, sent_ts=sent_ts
    )
    frame = PredictionsFrame.model_validate_json(text)
    assert frame.items == items
    assert (frame.last_id, frame.snapshot) == (last_id, snapshot)
    if sent_ts is not None:
        assert frame.sent_ts == sent_ts
    else:
        assert frame.sent_ts is not None


@given(st.none() | stream_ids, timestamps)
def test_heartbeat_frames_are_the_frame_model(last_id: str | None, ts: float) -> None:
    text = fast.encode_heartbeat_frame(last_id, ts)
    assert HeartbeatFrame.model_validate_json(text) == HeartbeatFrame(ts=ts, last_id=last_id)
    assert _keys(text.encode()) == ["type", "ts", "last_id"]


def test_boot_ids_fit_the_contract() -> None:
    boots = {fast.new_boot_id() for _ in range(100)}
    assert len(boots) == 100
    assert all(0 <= b <= MAX_BOOT for b in boots)
