"""What the inference core needs from a model; the ONNX implementation lives in
:mod:`iot_models.onnx_model` (built from ``models/<name>/<version>/manifest.json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["Model", "ModelInfo", "ModelKind", "Output"]

ModelKind = Literal["classifier", "autoencoder", "regressor"]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """Identity and input contract of a loaded model.

    Attributes:
        name: route key (a reading's ``model`` field selects it).
        version: model version directory name.
        variant: ``fp32``, ``int8-x86_64``, ``int8-arm64``, ... (the file actually loaded).
        kind: how outputs are interpreted.
        feature_names: ordered input features; ``len(feature_names)`` is the input width.
        labels: class names of a classifier, index-aligned with its probabilities.
    """

    name: str
    version: str
    variant: str
    kind: ModelKind
    feature_names: tuple[str, ...]
    labels: tuple[str, ...] | None = None

    @property
    def n_features(self) -> int:
        """Input width."""
        return len(self.feature_names)


class Output(NamedTuple):
    """One row's model output, before it becomes a :class:`iot_contract.Prediction`.

    Immutable, and a named tuple rather than a frozen dataclass: one is built per reading
    on the worker's hot path, and a frozen dataclass's ``__init__`` (``object.__setattr__``
    per field) took ~0.85 µs where this takes ~0.3 (positional)."""

    score: float
    """Anomaly score: 1 - P(normal) for classifiers, reconstruction error for autoencoders."""
    anomaly: bool
    label: str | None = None
    probabilities: dict[str, float] | None = None
    values: tuple[float, ...] | None = None


class Model(Protocol):
    """A loaded, warmed-up model. ``predict`` is thread-safe and may run off the event loop."""

    @property
    def info(self) -> ModelInfo:
        """Identity and input contract."""
        ...

    def predict(self, features: npt.NDArray[np.float32]) -> list[Output]:
        """Score a batch: ``features`` is float32 ``(n, info.n_features)``; returns ``n`` outputs.

        Inputs are validated (finite, right width) before they get here.
        """
        ...
