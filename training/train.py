"""Fit the scikit-learn pipelines (StandardScaler + MLP) of a :class:`ModelSpec`."""

from __future__ import annotations

import warnings
from typing import Any

from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier, MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

from training.data import Split
from training.specs import ModelSpec

__all__ = ["fit"]

_SEED = 7


def fit(spec: ModelSpec, train: Split) -> Any:
    """Train ``spec`` on ``train``; returns a fitted ``Pipeline(scaler, mlp)``.

    BLAS runs on one thread: multi-threaded GEMM may sum in another order and change the
    weights' last bits, which would change the artifacts' hashes.
    Epochs are capped by ``spec.max_iter`` on purpose; the convergence warning is expected.
    """
    rows = train.x[: spec.train_rows]
    labels = train.y[: spec.train_rows]
    classifier = spec.kind == "classifier"
    mlp: Any = (MLPClassifier if classifier else MLPRegressor)(
        hidden_layer_sizes=spec.hidden,
        activation=spec.activation,
        max_iter=spec.max_iter,
        batch_size=256,
        random_state=_SEED,
    )
    # The autoencoder learns normal rows only, to reconstruct them (its target is its input).
    target = labels if classifier else None
    if not classifier:
        rows = rows[labels == 0]
    pipeline = Pipeline([("scaler", StandardScaler()), ("mlp", mlp)])
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if target is None:
            scaler = pipeline.named_steps["scaler"].fit(rows)
            mlp.fit(scaler.transform(rows), scaler.transform(rows))
        else:
            pipeline.fit(rows, target)
    return pipeline
