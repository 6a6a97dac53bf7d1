"""The optional ``features`` of a prediction (#14): the fast record builder against the
model (values, field order), the inference core's switch, and the consumers that read
records (the gateway's head reader, the REST path's validation)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from iot_contract import (
    ContractError,
    Hops,
    JsonCodec,
    ModelRef,
    Prediction,
    Reading,
    encode_record,
    prediction_record,
    read_prediction_head,
)
from iot_models.core import InferenceCore
from iot_models.model import Output
from tests.harness.models import LinearModel
from tests.unit.test_codecs import finite, readings

JSON = JsonCodec()


@given(readings, st.sampled_from([None, "normal"]), st.none() | finite)
def test_a_record_with_features_is_the_prediction_model(
    reading: Reading, label: str | None, published_ts: float | None
) -> None:
    out = Output(score=0.25, anomaly=False, label=label, probabilities=None, values=None)
    ref = ModelRef(name="m", version="2", variant="fp32")
    record = prediction_record(
        reading,
        ref.model_dump(),
        out,
        received_ts=1.0,
        inferred_ts=2.0,
        worker_id="w",
        features=True,
    )
    assert record["features"] is reading.features  # referenced, not copied
    raw = encode_record(record, None if published_ts is None else abs(published_ts))
    model = JSON.decode(raw, Prediction)
    assert model.features == reading.features
    expected = model.model_copy(update={"features": None})
    assert Prediction.model_validate({**orjson.loads(raw), "features": None}) == expected
    keys: list[str] = list(orjson.loads(raw))
    assert keys == list(orjson.loads(JSON.encode(model)))  # the model's field order
    assert keys.index("features") == keys.index("hops") - 1
    assert read_prediction_head(raw) == (reading.device_id, "m", False)


@given(readings)
def test_without_the_switch_a_record_has_no_features(reading: Reading) -> None:
    out = Output(score=0.5, anomaly=True)
    record = prediction_record(
        reading,
        {"name": "m", "version": "1", "variant": "x"},
        out,
        received_ts=1.0,
        inferred_ts=2.0,
        worker_id="w",
    )
    assert "features" not in record
    assert Prediction.model_validate(record).features is None


def _core(record_features: bool) -> InferenceCore:
    return InferenceCore(
        {"lin": LinearModel()},
        default_model="lin",
        worker_id="w1",
        clock=lambda: 5.0,
        record_features=record_features,
    )


def test_the_core_records_features_only_when_asked() -> None:
    batch = [Reading(device_id="d1", seq=i, ts=1.0, features=[i, 0.5, -2.0]) for i in range(3)]
    on = _core(True).infer(batch, received_ts=2.0)
    assert [p.features for p in on.predictions] == [r.features for r in batch]
    assert [r["features"] for r in on.records] == [r.features for r in batch]
    off = _core(False).infer(batch, received_ts=2.0)
    assert all(p.features is None for p in off.predictions)
    scores: list[Any] = [p.score for p in off.predictions]
    assert scores == [p.score for p in on.predictions]


def test_a_prediction_refuses_features_that_are_not_numbers() -> None:
    base = Prediction(
        device_id="d1",
        seq=1,
        model=ModelRef(name="m", version="1", variant="fp32"),
        score=0.1,
        anomaly=False,
        features=[1.0, 2.0],
        hops=Hops(device_ts=1.0, received_ts=1.0, inferred_ts=1.0),
        worker_id="w",
    )
    assert JSON.decode(JSON.encode(base), Prediction) == base
    for bad in (b'[1.0,"2"]', b"[1.0,NaN]", b"[1.0,true]"):
        with pytest.raises(ContractError):
            JSON.decode(JSON.encode(base).replace(b"[1.0,2.0]", bad), Prediction)
