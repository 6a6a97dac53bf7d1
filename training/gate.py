"""The accuracy gate: an int8 variant that drifts too far from fp32 fails the build."""

from __future__ import annotations

from collections.abc import Mapping

from iot_models.manifest import Accuracy, GateLimits

__all__ = ["AUTOENCODER_LIMITS", "CLASSIFIER_LIMITS", "GateError", "enforce", "violations"]

CLASSIFIER_LIMITS = GateLimits(max_macro_f1_drop_points=1.0, min_agreement=0.98)
"""At most 1.0 point of macro-F1 lost, at least 98 % of test rows with fp32's label."""

AUTOENCODER_LIMITS = GateLimits(max_auc_drop_points=1.0, max_score_rel_mae=0.10, min_agreement=0.98)
"""At most 1.0 point of AUC lost, mean score error within 10 % of the mean fp32 score, at
least 98 % of rows with fp32's anomaly flag."""


class GateError(Exception):
    """One or more variants broke the gate; ``problems`` lists each violation."""

    def __init__(self, model: str, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(f"{model}: accuracy gate failed: " + "; ".join(problems))


def violations(limits: GateLimits, variant: str, acc: Accuracy) -> list[str]:
    """Every way ``acc`` breaks ``limits`` (empty when it passes)."""
    found: list[str] = []

    def over(value: float | None, limit: float | None, what: str) -> None:
        if limit is not None and (value is None or value > limit):
            found.append(f"{variant}: {what} {value} > {limit}")

    over(acc.macro_f1_delta_points, limits.max_macro_f1_drop_points, "macro-F1 drop (points)")
    over(acc.auc_delta_points, limits.max_auc_drop_points, "AUC drop (points)")
    over(acc.score_rel_mae_vs_fp32, limits.max_score_rel_mae, "relative score MAE")
    if acc.agreement_with_fp32 < limits.min_agreement:
        found.append(
            f"{variant}: agreement with fp32 {acc.agreement_with_fp32} < {limits.min_agreement}"
        )
    return found


def enforce(model: str, limits: GateLimits, results: Mapping[str, Accuracy]) -> None:
    """Raise :class:`GateError` if any non-fp32 variant in ``results`` breaks ``limits``."""
    problems = [
        problem
        for variant, acc in results.items()
        if variant != "fp32"
        for problem in violations(limits, variant, acc)
    ]
    if problems:
        raise GateError(model, problems)
