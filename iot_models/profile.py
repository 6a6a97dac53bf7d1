"""A model version's training reference for drift: per feature, the bins of the training
data and the share of rows in each, and the population stability index (PSI) that compares
a live window with it.

The reference is written into the version's manifest at build time
(:attr:`iot_models.manifest.Manifest.reference`), so a worker serving a version has the
reference of exactly that version, checked with the rest of the manifest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["PSI_EPSILON", "FeatureProfile", "psi"]

PSI_EPSILON = 1e-4
"""Floor of a bin's share in :func:`psi` (an empty bin would make the index infinite)."""


class FeatureProfile(BaseModel):
    """Per-feature quantile bins of the training data and the share of rows in each bin.

    ``edges[i]`` are feature ``i``'s interior bin edges (ascending; ``bins - 1`` of them:
    the outer bins are open-ended, so live values outside the training range still land
    in a bin); ``shares[i]`` the fraction of training rows in each of its ``bins`` bins.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    feature_names: tuple[str, ...]
    edges: tuple[tuple[float, ...], ...]
    shares: tuple[tuple[float, ...], ...]
    means: tuple[float, ...]
    rows: int = Field(gt=0)
    source: str = Field(description="what data the reference was computed from")

    @model_validator(mode="after")
    def _consistent(self) -> FeatureProfile:
        n = len(self.feature_names)
        if not (len(self.edges) == len(self.shares) == len(self.means) == n):
            raise ValueError("edges, shares and means need one entry per feature")
        for edges, shares in zip(self.edges, self.shares, strict=True):
            if len(shares) != len(edges) + 1:
                raise ValueError("each feature needs one more share than edges")
            if list(edges) != sorted(edges):
                raise ValueError("bin edges must ascend")
        return self

    @classmethod
    def from_samples(
        cls,
        x: npt.ArrayLike,
        feature_names: Sequence[str],
        *,
        source: str,
        bins: int = 10,
    ) -> FeatureProfile:
        """The profile of the rows of ``x`` (``(rows, features)``): ``bins`` quantile bins
        per feature (fewer when a feature has few distinct values)."""
        data = np.asarray(x, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != len(feature_names) or len(data) == 0:
            raise ValueError(
                f"need a (rows, {len(feature_names)}) array with rows, got {data.shape}"
            )
        quantiles = np.linspace(0, 1, bins + 1)[1:-1]
        edges, shares = [], []
        for column in data.T:
            cut = np.unique(np.quantile(column, quantiles))
            counts = np.bincount(np.searchsorted(cut, column, side="right"), minlength=len(cut) + 1)
            edges.append(tuple(float(e) for e in cut))
            shares.append(tuple(float(c) for c in counts / len(column)))
        return cls(
            feature_names=tuple(feature_names),
            edges=tuple(edges),
            shares=tuple(shares),
            means=tuple(float(m) for m in data.mean(axis=0)),
            rows=len(data),
            source=source,
        )

    def counts(self, x: npt.NDArray[np.floating]) -> list[npt.NDArray[np.int64]]:
        """Per feature, how many rows of ``x`` (``(rows, features)``) fall in each bin."""
        return [
            np.bincount(
                np.searchsorted(np.asarray(edges), x[:, i], side="right"),
                minlength=len(edges) + 1,
            )
            for i, edges in enumerate(self.edges)
        ]


def psi(reference: Sequence[float], counts: npt.ArrayLike) -> float:
    """Population stability index of live bin ``counts`` against reference ``shares``:
    ``sum((live - ref) * ln(live / ref))`` over bins, shares floored at
    :data:`PSI_EPSILON`. 0 for identical distributions; 0 for an empty window."""
    live = np.asarray(counts, dtype=np.float64)
    total = live.sum()
    if total <= 0:
        return 0.0
    p = np.maximum(live / total, PSI_EPSILON)
    q = np.maximum(np.asarray(reference, dtype=np.float64), PSI_EPSILON)
    return float(np.sum((p - q) * np.log(p / q)))
