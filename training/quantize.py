"""int8 variants with ``onnxruntime.quantization`` (pre-process, then static QDQ).

Follows ONNX Runtime's quantization guide: ``quant_pre_process`` (symbolic shape inference
and graph optimisation) first, then static quantization in QDQ format with min/max ranges
from a calibration reader over held-out normal and fault rows. Recipes:

* ``int8-x86_64``: U8S8 (uint8 activations, int8 weights) for x86-64 with VNNI.
* ``int8-x86_64-novnni``: the same with ``reduce_range`` (7-bit weights) for x86-64 CPUs
  without VNNI, whose ``vpmaddubsw`` path can saturate int16 with full-range weights.
* ``int8-arm64``: S8S8 (int8 activations and weights), what the arm64 kernels run best.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from iot_models.manifest import Quantization

__all__ = ["RECIPES", "ArrayCalibrationReader", "Recipe", "preprocess", "quantize"]

CALIBRATION_BATCH = 256


@dataclass(frozen=True, slots=True)
class Recipe:
    """One int8 variant's quantization settings."""

    variant: str
    activation_type: Literal["QUInt8", "QInt8"]
    weight_type: Literal["QInt8", "QUInt8"]
    reduce_range: bool
    per_channel: bool
    target: str

    def describe(self, excluded: Sequence[str]) -> Quantization:
        """The manifest record of this recipe."""
        return Quantization(
            method="static",
            format="QDQ",
            activation_type=self.activation_type,
            weight_type=self.weight_type,
            reduce_range=self.reduce_range,
            per_channel=self.per_channel,
            target=self.target,
            excluded_nodes=tuple(excluded),
        )


RECIPES: tuple[Recipe, ...] = (
    Recipe("int8-x86_64", "QUInt8", "QInt8", False, False, "x86-64 with avx512_vnni/avx_vnni"),
    Recipe("int8-x86_64-novnni", "QUInt8", "QInt8", True, False, "x86-64 without VNNI (AVX2)"),
    Recipe("int8-arm64", "QInt8", "QInt8", False, False, "arm64 (NEON, dot product, i8mm)"),
)


class ArrayCalibrationReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds ``rows`` to the calibrator in fixed batches, in order (deterministic ranges)."""

    def __init__(self, input_name: str, rows: npt.NDArray[np.float32]) -> None:
        self._input = input_name
        self._rows = np.ascontiguousarray(rows, dtype=np.float32)
        self._batches: Iterator[npt.NDArray[np.float32]] = iter(())
        self.rewind()

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        """The next batch, or ``None`` when done."""
        batch = next(self._batches, None)
        return None if batch is None else {self._input: batch}

    def rewind(self) -> None:
        """Start over from the first batch."""
        n = len(self._rows)
        self._batches = iter(
            [self._rows[i : i + CALIBRATION_BATCH] for i in range(0, n, CALIBRATION_BATCH)]
        )


def preprocess(fp32: Path, out: Path) -> None:
    """``quant_pre_process``: ONNX shape inference + ORT graph optimisation before quantizing.

    Symbolic shape inference is skipped: it needs sympy and exists for graphs with
    data-dependent shapes (transformers); these MLPs are fully typed by ONNX shape inference.
    """
    quant_pre_process(str(fp32), str(out), skip_symbolic_shape=True)


def quantize(
    pre: Path,
    out: Path,
    recipe: Recipe,
    reader: Any,
    exclude: Sequence[str] = (),
) -> None:
    """Static QDQ quantization of the pre-processed model ``pre`` into ``out``."""
    with tempfile.TemporaryDirectory(prefix="iotstream-quant-") as tmp:
        reader.rewind()
        quantize_static(
            str(pre),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            per_channel=recipe.per_channel,
            reduce_range=recipe.reduce_range,
            activation_type=getattr(QuantType, recipe.activation_type),
            weight_type=getattr(QuantType, recipe.weight_type),
            nodes_to_exclude=list(exclude),
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"CalibTensorRangeSymmetric": False},
            calibration_cache_path=None,
        )
        del tmp
