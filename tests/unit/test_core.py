"""The inference core: routing, per-model checks, one model call per batch, bad rows isolated."""

from __future__ import annotations

import math

import pytest

from iot_contract import Reading, RejectReason
from iot_models.core import InferenceCore
from tests.harness.models import LinearModel, NanModel


def reading(seq: int, features: list[float], model: str | None = None, label: str | None = None):
    return Reading(
        device_id=f"d{seq % 3}",
        seq=seq,
        ts=100.0 + seq,
        features=features,
        model=model,
        label=label,
    )


def make_core(**models: LinearModel) -> InferenceCore:
    models = models or {"lin": LinearModel()}
    return InferenceCore(
        models, default_model=next(iter(models)), worker_id="w1", clock=lambda: 500.0
    )


def test_predictions_match_the_model_row_by_row() -> None:
    model = LinearModel()
    core = make_core(lin=model)
    batch = [reading(i, [i, 1.0, 2.0], label="normal") for i in range(5)]
    result = core.infer(batch, received_ts=200.0)
    assert result.rejected == []
    assert result.indices == [0, 1, 2, 3, 4]
    assert len(model.calls) == 1, "one model call per batch"
    for r, p in zip(batch, result.predictions, strict=True):
        expected = 1 / (1 + math.exp(-(r.features[0] - 1.0 + 1.0)))
        assert p.score == pytest.approx(expected, rel=1e-6)
        assert (p.device_id, p.seq, p.truth) == (r.device_id, r.seq, "normal")
        assert p.anomaly == (expected > 0.5)
        assert p.model.name == "lin"
        assert p.model.variant == "numpy"
        assert p.worker_id == "w1"
        assert (p.hops.device_ts, p.hops.received_ts, p.hops.inferred_ts) == (r.ts, 200.0, 500.0)
        assert p.hops.published_ts is None


def test_bad_rows_are_rejected_and_good_rows_still_flow() -> None:
    core = make_core(lin=LinearModel())
    batch = [
        reading(0, [1.0, 2.0, 3.0]),
        reading(1, [1.0, 2.0]),  # wrong width
        reading(2, [1.0, 2.0, 3.0], model="nope"),  # unknown model
        reading(3, [1e300, 0.0, 0.0]),  # finite double, inf as float32
        reading(4, [0.5, 0.5, 0.5]),
    ]
    result = core.infer(batch, received_ts=1.0)
    assert result.indices == [0, 4]
    assert [p.seq for p in result.predictions] == [0, 4]
    reasons = {i: e.reason for i, e in result.rejected}
    assert reasons == {
        1: RejectReason.FEATURE_COUNT,
        2: RejectReason.UNKNOWN_MODEL,
        3: RejectReason.OUT_OF_RANGE,
    }
    details = {i: e.detail for i, e in result.rejected}
    assert "takes 3 features, the reading has 2" in details[1]
    assert "'nope'" in details[2]
    assert "lin" in details[2]


def test_routes_by_model_field_with_one_call_per_model() -> None:
    a, b = LinearModel(name="a"), LinearModel(name="b", weights=(0.0, 0.0))
    core = make_core(a=a, b=b)
    batch = [
        reading(0, [1.0, 1.0, 1.0]),
        reading(1, [1.0, 1.0], model="b"),
        reading(2, [2.0, 1.0, 1.0], model="a"),
        reading(3, [3.0, 3.0], model="b"),
    ]
    result = core.infer(batch, received_ts=[1.0, 2.0, 3.0, 4.0])
    assert [p.model.name for p in result.predictions] == ["a", "b", "a", "b"]
    assert [p.hops.received_ts for p in result.predictions] == [1.0, 2.0, 3.0, 4.0]
    assert len(a.calls) == 1
    assert len(b.calls) == 1
    assert a.calls[0].shape == (2, 3)
    assert b.calls[0].shape == (2, 2)


def test_non_finite_model_output_is_rejected_for_that_row_only() -> None:
    core = make_core(nan=NanModel())
    result = core.infer([reading(0, [-1.0, 0, 0]), reading(1, [1.0, 0, 0])], received_ts=1.0)
    assert [p.seq for p in result.predictions] == [1]
    assert [(i, e.reason) for i, e in result.rejected] == [(0, RejectReason.MODEL_OUTPUT)]


def test_unknown_default_model_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="default model 'x' is not loaded"):
        InferenceCore({"lin": LinearModel()}, default_model="x", worker_id="w")


def test_empty_batch() -> None:
    result = make_core().infer([], received_ts=0.0)
    assert result.predictions == []
    assert result.rejected == []


def test_topic_rules_route_by_device_id_glob_before_the_default() -> None:
    a, b = LinearModel(name="a"), LinearModel(name="b")
    core = InferenceCore(
        {"a": a, "b": b}, default_model="a", worker_id="w", routes={"fan-*": "b", "fan-9": "a"}
    )
    batch = [
        Reading(device_id="fan-9", seq=1, ts=1.0, features=[1.0, 1.0, 1.0]),
        Reading(device_id="pump-1", seq=1, ts=1.0, features=[1.0, 1.0, 1.0]),
        Reading(device_id="fan-2", seq=1, ts=1.0, features=[1.0, 1.0, 1.0], model="a"),
    ]
    result = core.infer(batch, received_ts=1.0)
    assert [p.model.name for p in result.predictions] == ["b", "a", "a"]


def test_routes_to_unloaded_models_are_refused() -> None:
    with pytest.raises(ValueError, match="not loaded: \\['zzz'\\]"):
        InferenceCore(
            {"a": LinearModel(name="a")}, default_model="a", worker_id="w", routes={"x*": "zzz"}
        )
