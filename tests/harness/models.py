"""Small in-process models implementing the worker's Model protocol (unit tests only;
component and integration tests use the real ONNX models)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from iot_models.core import InferenceCore
from iot_models.model import ModelInfo, Output


@dataclass
class LinearModel:
    """A two-class logistic model: P(fault) = sigmoid(sum(weights * x)).

    Records every batch it was called with, so tests can see how the core batches.
    """

    name: str = "lin"
    weights: tuple[float, ...] = (1.0, -1.0, 0.5)
    threshold: float = 0.5
    calls: list[npt.NDArray[np.float32]] = field(default_factory=list)

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(
            name=self.name,
            version="test",
            variant="numpy",
            kind="classifier",
            feature_names=tuple(f"f{i}" for i in range(len(self.weights))),
            labels=("normal", "fault"),
        )

    def predict(self, features: npt.NDArray[np.float32]) -> list[Output]:
        assert features.dtype == np.float32
        assert features.shape[1] == len(self.weights)
        self.calls.append(features.copy())
        with np.errstate(over="ignore"):
            z = features.astype(np.float64) @ np.asarray(self.weights)
            p = 1.0 / (1.0 + np.exp(-z))
        return [
            Output(
                score=float(pi),
                anomaly=bool(pi > self.threshold),
                label="fault" if pi > 0.5 else "normal",
                probabilities={"normal": float(1 - pi), "fault": float(pi)},
            )
            for pi in p
        ]


@dataclass
class NanModel(LinearModel):
    """Returns NaN for rows whose first feature is negative (a misbehaving model)."""

    name: str = "nan"

    def predict(self, features: npt.NDArray[np.float32]) -> list[Output]:
        outs = super().predict(features)
        return [
            Output(score=float("nan"), anomaly=False) if row[0] < 0 else out
            for row, out in zip(features, outs, strict=True)
        ]


def linear_core(worker_id: str) -> InferenceCore:
    """An inference core serving one :class:`LinearModel` as ``lin`` (the default route)."""
    return InferenceCore({"lin": LinearModel()}, default_model="lin", worker_id=worker_id)
