"""Train / calibration / test splits from the shared sensor generator, with fixed seeds.

Each split is drawn from its own fleet (the seed also draws the devices), so calibration and
test rows come from machines the model never saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from iot_models.sensors import LABELS, make_dataset

__all__ = ["SEEDS", "Split", "Splits", "make_splits"]

SEEDS = {"train": 101, "calibration": 202, "test": 303}
"""Generator seed per split: part of the model's definition (changing one changes the hashes)."""


@dataclass(frozen=True, slots=True)
class Split:
    """Rows ``x`` float32 ``(n, 16)`` and label indices ``y`` (into ``LABELS``)."""

    name: str
    seed: int
    x: npt.NDArray[np.float32]
    y: npt.NDArray[np.int64]

    @property
    def normal(self) -> Split:
        """Only the rows labelled normal."""
        keep = self.y == 0
        return Split(f"{self.name}-normal", self.seed, self.x[keep], self.y[keep])

    def composition(self) -> dict[str, int]:
        """Row count per label name."""
        counts = np.bincount(self.y, minlength=len(LABELS))
        return {label: int(c) for label, c in zip(LABELS, counts, strict=True)}


@dataclass(frozen=True, slots=True)
class Splits:
    """The three splits of one build."""

    train: Split
    calibration: Split
    test: Split


def make_splits(
    train_rows: int = 20_000, calibration_rows: int = 2_000, test_rows: int = 10_000
) -> Splits:
    """Draw the splits (deterministic for given sizes)."""

    def split(name: str, rows: int) -> Split:
        x, y = make_dataset(rows, SEEDS[name])
        return Split(name, SEEDS[name], x, y)

    return Splits(
        split("train", train_rows),
        split("calibration", calibration_rows),
        split("test", test_rows),
    )
