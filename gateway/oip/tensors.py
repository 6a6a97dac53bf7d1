"""Open Inference Protocol tensors to and from the inference core: pure, no transport.

A served model looks like this to V2 clients (:func:`model_spec`):

- input ``features``: ``FP32 [-1, F]``, one row per reading, ``F`` = the model's width;
- outputs ``score`` ``FP32 [-1]`` and ``anomaly`` ``BOOL [-1]``, and for classifiers
  ``label`` ``BYTES [-1]`` and ``probabilities`` ``FP32 [-1, L]`` (in the manifest's label
  order); each row is the prediction the streaming path makes for the same reading.

Both wire forms decode here: typed contents / JSON ``data`` (a flat or nested list) and raw
bytes (gRPC ``raw_input_contents``, the REST binary-data extension: little-endian, row-major;
``BYTES`` elements each prefixed by a 4-byte little-endian length).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from gateway.oip.errors import InvalidInputError
from iot_contract import PredictionRecord
from iot_models.model import ModelInfo

__all__ = [
    "FEATURES",
    "InputTensor",
    "ModelSpec",
    "OutputTensor",
    "TensorSpec",
    "decode_features",
    "model_spec",
    "output_tensors",
]

FEATURES: Final = "features"
_F32_MAX: Final = float(np.finfo(np.float32).max)
ITEM_SIZE: Final = {
    "BOOL": 1,
    "UINT8": 1,
    "UINT16": 2,
    "UINT32": 4,
    "UINT64": 8,
    "INT8": 1,
    "INT16": 2,
    "INT32": 4,
    "INT64": 8,
    "FP16": 2,
    "BF16": 2,
    "FP32": 4,
    "FP64": 8,
}
"""Bytes per element of the fixed-size datatypes (``BYTES`` is variable)."""
DATATYPES: Final = frozenset(ITEM_SIZE) | {"BYTES"}


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A tensor's name, datatype and shape (``-1``: any size) in model metadata."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What the protocol's model metadata says about one served model."""

    name: str
    version: str
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    labels: tuple[str, ...] | None

    @property
    def width(self) -> int:
        """Features per row."""
        return self.inputs[0].shape[1]


def model_spec(info: ModelInfo) -> ModelSpec:
    """The metadata of a loaded model (its input width, kind and labels decide it)."""
    outputs = [TensorSpec("score", "FP32", (-1,)), TensorSpec("anomaly", "BOOL", (-1,))]
    if info.labels is not None:
        outputs += [
            TensorSpec("label", "BYTES", (-1,)),
            TensorSpec("probabilities", "FP32", (-1, len(info.labels))),
        ]
    return ModelSpec(
        name=info.name,
        version=info.version,
        platform="onnxruntime_onnx",
        inputs=(TensorSpec(FEATURES, "FP32", (-1, info.n_features)),),
        outputs=tuple(outputs),
        labels=info.labels,
    )


@dataclass(frozen=True, slots=True)
class InputTensor:
    """One request input as it came off the wire: typed/JSON ``data`` or ``raw`` bytes."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Sequence[Any] | None = None
    raw: bytes | None = None


@dataclass(frozen=True, slots=True)
class OutputTensor:
    """One response output: ``array`` holds float32, bool or bytes objects."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    array: npt.NDArray[Any]

    def json_data(self) -> list[Any]:
        """The elements flattened row-major, as JSON values (``BYTES`` decoded as UTF-8)."""
        flat = self.array.reshape(-1)
        if self.datatype == "BYTES":
            return [bytes(v).decode("utf-8", "replace") for v in flat]
        return list(flat.tolist())

    def raw(self) -> bytes:
        """The elements flattened row-major in the protocol's raw form."""
        flat = self.array.reshape(-1)
        if self.datatype == "BYTES":
            return b"".join(struct.pack("<I", len(v)) + bytes(v) for v in flat)
        if self.datatype == "BOOL":
            return flat.astype(np.bool_).tobytes()
        return flat.astype("<f4").tobytes()


def decode_features(spec: ModelSpec, inputs: Sequence[InputTensor]) -> npt.NDArray[np.float32]:
    """The ``(n, F)`` float32 rows of a request for ``spec``.

    Raises:
        InvalidInputError: not exactly one input named ``features``, a datatype other than
            ``FP32``, a shape other than ``[n, F]`` (n >= 1), contents whose size does not
            match the shape, or a value that is not a finite float32.
    """
    want = spec.inputs[0]
    if len(inputs) != 1:
        raise InvalidInputError(
            f"model {spec.name!r} takes exactly one input {want.name!r}, got {len(inputs)}"
        )
    tensor = inputs[0]
    if tensor.name != want.name:
        raise InvalidInputError(
            f"unexpected input {tensor.name[:64]!r} for model {spec.name!r}; it takes {want.name!r}"
        )
    if tensor.datatype != want.datatype:
        raise InvalidInputError(
            f"input {want.name!r}: datatype {tensor.datatype[:16]!r}, "
            f"the model takes {want.datatype}"
        )
    shape = tensor.shape
    if len(shape) != 2 or shape[0] < 1 or shape[1] != spec.width:
        raise InvalidInputError(
            f"input {want.name!r}: shape {list(shape)[:8]}, the model takes [-1, {spec.width}] "
            "(one row per reading)"
        )
    count = shape[0] * shape[1]
    if tensor.raw is not None:
        if len(tensor.raw) != count * 4:
            raise InvalidInputError(
                f"input {want.name!r}: {len(tensor.raw)} bytes of raw data, shape {list(shape)} "
                f"needs {count * 4}"
            )
        array = np.frombuffer(tensor.raw, dtype="<f4").astype(np.float32)
    else:
        values = _flatten(tensor.data if tensor.data is not None else [], want.name)
        if len(values) != count:
            raise InvalidInputError(
                f"input {want.name!r}: {len(values)} values, shape {list(shape)} needs {count}"
            )
        if any(abs(v) > _F32_MAX for v in values):
            raise InvalidInputError(f"input {want.name!r}: a value is outside the FP32 range")
        array = np.asarray(values, dtype=np.float32)
    if not np.isfinite(array).all():
        raise InvalidInputError(f"input {want.name!r}: NaN and infinity are not accepted")
    return array.reshape(shape[0], shape[1])


def _flatten(data: Sequence[Any], name: str) -> list[float]:
    out: list[float] = []
    stack: list[Any] = [iter(data)]
    while stack:
        value = next(stack[-1], _END)
        if value is _END:
            stack.pop()
        elif isinstance(value, list | tuple):
            if len(stack) > 8:
                raise InvalidInputError(f"input {name!r}: data nested too deeply")
            stack.append(iter(value))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise InvalidInputError(f"input {name!r}: NaN and infinity are not accepted")
            out.append(float(value))
        else:
            raise InvalidInputError(f"input {name!r}: FP32 data must be numbers")
    return out


_END: Final = object()


def output_tensors(
    spec: ModelSpec, records: Sequence[PredictionRecord], requested: Sequence[str] | None
) -> list[OutputTensor]:
    """The response tensors for one prediction record per row, in ``requested`` order (every
    output of the model when ``None``).

    Raises:
        InvalidInputError: a requested output the model does not have.
    """
    known = {t.name: t for t in spec.outputs}
    names = list(requested) if requested else list(known)
    for name in names:
        if name not in known:
            raise InvalidInputError(
                f"model {spec.name!r} has no output {name[:64]!r}; outputs: {', '.join(known)}"
            )
    n = len(records)
    out = []
    for name in names:
        t = known[name]
        if name == "score":
            array: npt.NDArray[Any] = np.array([r["score"] for r in records], dtype=np.float32)
        elif name == "anomaly":
            array = np.array([r["anomaly"] for r in records], dtype=np.bool_)
        elif name == "label":
            array = np.array([str(r.get("label", "")).encode() for r in records], dtype=np.object_)
        else:
            labels = spec.labels or ()
            array = np.array(
                [[r["probabilities"][label] for label in labels] for r in records],
                dtype=np.float32,
            ).reshape(n, len(labels))
        shape = (n,) if len(t.shape) == 1 else (n, t.shape[1])
        out.append(OutputTensor(name, t.datatype, shape, array))
    return out
