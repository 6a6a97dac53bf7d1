"""The accuracy gate's rules, on hand-made accuracy records."""

from __future__ import annotations

import pytest

from iot_models.manifest import Accuracy
from training.gate import AUTOENCODER_LIMITS, CLASSIFIER_LIMITS, GateError, enforce, violations


def _acc(**changes: float) -> Accuracy:
    base = {
        "rows": 1000,
        "macro_f1": 0.9,
        "auc": 0.95,
        "agreement_with_fp32": 0.995,
        "macro_f1_delta_points": 0.3,
        "auc_delta_points": 0.1,
        "score_mae_vs_fp32": 0.01,
        "score_rel_mae_vs_fp32": 0.02,
    }
    return Accuracy.model_validate({**base, **changes})


def test_a_close_variant_passes() -> None:
    assert violations(CLASSIFIER_LIMITS, "int8", _acc()) == []
    assert violations(AUTOENCODER_LIMITS, "int8", _acc()) == []


@pytest.mark.parametrize(
    ("changes", "what"),
    [
        ({"macro_f1_delta_points": 1.01}, "macro-F1 drop"),
        ({"agreement_with_fp32": 0.979}, "agreement"),
    ],
)
def test_classifier_limits(changes: dict[str, float], what: str) -> None:
    found = violations(CLASSIFIER_LIMITS, "int8-x", _acc(**changes))
    assert len(found) == 1
    assert what in found[0]
    assert found[0].startswith("int8-x")


@pytest.mark.parametrize(
    ("changes", "what"),
    [
        ({"auc_delta_points": 1.5}, "AUC drop"),
        ({"score_rel_mae_vs_fp32": 0.2}, "relative score MAE"),
        ({"agreement_with_fp32": 0.5}, "agreement"),
    ],
)
def test_autoencoder_limits(changes: dict[str, float], what: str) -> None:
    found = violations(AUTOENCODER_LIMITS, "int8", _acc(**changes))
    assert len(found) == 1
    assert what in found[0]


def test_exactly_at_the_limit_passes() -> None:
    assert violations(CLASSIFIER_LIMITS, "v", _acc(macro_f1_delta_points=1.0)) == []
    assert violations(CLASSIFIER_LIMITS, "v", _acc(agreement_with_fp32=0.98)) == []


def test_missing_metric_fails_when_limited() -> None:
    found = violations(
        CLASSIFIER_LIMITS, "v", _acc().model_copy(update={"macro_f1_delta_points": None})
    )
    assert found and "macro-F1" in found[0]


def test_enforce_lists_every_problem_and_skips_fp32() -> None:
    bad = _acc(macro_f1_delta_points=5.0, agreement_with_fp32=0.5)
    enforce("m", CLASSIFIER_LIMITS, {"fp32": bad, "int8-a": _acc()})  # fp32 is the reference
    with pytest.raises(GateError) as info:
        enforce("m", CLASSIFIER_LIMITS, {"fp32": _acc(), "int8-a": bad, "int8-b": bad})
    assert len(info.value.problems) == 4
    assert "m: accuracy gate failed" in str(info.value)
