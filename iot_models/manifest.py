"""The model repository: ``models/<name>/<version>/`` folders, their manifest, and errors.

Each version folder holds the ONNX files of its variants and a ``manifest.json`` described
by :class:`Manifest`. ``training.build`` writes it; the runtime reads it with pydantic and
hashlib only (no scikit-learn, no onnx).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from iot_models.profile import FeatureProfile

__all__ = [
    "MANIFEST_FILE",
    "Accuracy",
    "BuildInfo",
    "Calibration",
    "DatasetRef",
    "DefaultVariant",
    "GateLimits",
    "HashMismatchError",
    "InputSpec",
    "Manifest",
    "ManifestError",
    "ModelError",
    "ModelNotFoundError",
    "OutputSpec",
    "Platform",
    "Quantization",
    "VariantEntry",
    "VariantNotFoundError",
    "find_manifests",
    "read_manifest",
    "sha256_bytes",
]

MANIFEST_FILE = "manifest.json"
Platform = Literal["x86_64-vnni", "x86_64", "arm64"]
"""CPU families a manifest names a default variant for; anything else runs ``fp32``."""


class ModelError(Exception):
    """Base of every model loading error; the message says what to do about it."""


class ModelNotFoundError(ModelError):
    """No model folder or manifest for a requested name."""


class VariantNotFoundError(ModelError):
    """The requested or default variant is not in the manifest or its file is missing."""


class HashMismatchError(ModelError):
    """A model file's sha256 differs from the manifest's: a corrupt or swapped file."""


class ManifestError(ModelError):
    """A manifest that is not valid JSON or does not follow the schema."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputSpec(_Frozen):
    """The single input tensor."""

    name: str
    dtype: Literal["float32"] = "float32"
    shape: tuple[int | None, int] = Field(description="(batch, features); batch is dynamic")
    feature_names: tuple[str, ...]

    @model_validator(mode="after")
    def _width(self) -> InputSpec:
        if self.shape[1] != len(self.feature_names):
            raise ValueError("input width differs from the number of feature names")
        return self


class OutputSpec(_Frozen):
    """What the output tensor means."""

    kind: Literal["classifier", "autoencoder"]
    tensor: str = Field(description="output tensor name to fetch")
    meaning: str
    labels: tuple[str, ...] | None = Field(None, description="classifier: index-aligned labels")
    normal_label: str | None = Field(None, description="classifier: label of normal operation")
    threshold: float = Field(description="anomaly = score > threshold")
    threshold_rule: str


class Quantization(_Frozen):
    """How an int8 variant was produced with ``onnxruntime.quantization``."""

    method: Literal["static", "dynamic"]
    format: Literal["QDQ", "QOperator"]
    activation_type: Literal["QUInt8", "QInt8"]
    weight_type: Literal["QInt8", "QUInt8"]
    reduce_range: bool
    per_channel: bool
    target: str = Field(description="the CPUs this variant is meant for")
    excluded_nodes: tuple[str, ...] = ()


class Accuracy(_Frozen):
    """A variant measured on the test split, against ground truth and against fp32."""

    rows: int
    macro_f1: float | None = None
    auc: float | None = None
    agreement_with_fp32: float = Field(description="share of rows with fp32's label/flag")
    macro_f1_delta_points: float | None = Field(None, description="fp32 minus this, x100")
    auc_delta_points: float | None = None
    score_mae_vs_fp32: float
    score_rel_mae_vs_fp32: float = Field(description="score MAE / mean |fp32 score|")


class VariantEntry(_Frozen):
    """One ONNX file of the version."""

    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(gt=0)
    precision: Literal["fp32", "int8"]
    quantization: Quantization | None = None
    accuracy: Accuracy


class DefaultVariant(_Frozen):
    """The variant a platform runs unless overridden, and why."""

    variant: str
    basis: str


class Calibration(_Frozen):
    """The data int8 ranges were calibrated on."""

    rows: int
    seed: int
    method: str
    composition: dict[str, int]
    source: str


class GateLimits(_Frozen):
    """The accuracy gate every int8 variant passed."""

    max_macro_f1_drop_points: float | None = None
    max_auc_drop_points: float | None = None
    max_score_rel_mae: float | None = None
    min_agreement: float


class DatasetRef(_Frozen):
    """The dataset version a retrained model was trained on (``training.pipeline``)."""

    id: str = Field(pattern=r"^[0-9a-f]{64}$", description="content-addressed dataset id")
    store: str = Field(description="the capture store holding datasets/<id>.json")
    rows: int = Field(ge=0, description="rows of the dataset (captured + synthetic)")
    captured_rows: int = Field(ge=0, description="of which captured (labelled) rows")
    run_id: str = Field(description="the pipeline run that built this version")


class BuildInfo(_Frozen):
    """Provenance: not part of the reproducibility comparison."""

    git_revision: str
    git_dirty: bool
    tool_versions: dict[str, str]
    dataset: DatasetRef | None = Field(
        None, description="retrained versions: the dataset version (None: the bundled splits)"
    )


class Manifest(_Frozen):
    """``models/<name>/<version>/manifest.json``."""

    schema_version: Literal[1] = 1
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    version: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    description: str
    opset: dict[str, int]
    input: InputSpec
    output: OutputSpec
    variants: dict[str, VariantEntry]
    defaults: dict[Platform, DefaultVariant]
    calibration: Calibration
    test_split: dict[str, int | str]
    gate: GateLimits
    build: BuildInfo
    reference: FeatureProfile | None = Field(
        None,
        description="the training data's feature profile, for drift (iot_models.profile); "
        "None in versions built before it existed (no drift measured)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if "fp32" not in self.variants:
            raise ValueError("every manifest needs the fp32 reference variant")
        for platform, default in self.defaults.items():
            if default.variant not in self.variants:
                raise ValueError(f"default for {platform} names unknown variant")
        if self.output.kind == "classifier" and (
            not self.output.labels or self.output.normal_label not in self.output.labels
        ):
            raise ValueError("a classifier needs labels including normal_label")
        return self


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def read_manifest(path: Path) -> Manifest:
    """Parse and validate a manifest file.

    Raises:
        ModelNotFoundError: the file does not exist.
        ManifestError: it is not valid JSON or breaks the schema.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        raise ModelNotFoundError(
            f"no manifest at {path}; build the models with `iotstream models build`"
        ) from exc
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as exc:
        raise ManifestError(
            f"{path} is not a valid model manifest ({exc.error_count()} errors, first: "
            f"{exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}); rebuild it with "
            "`iotstream models build`"
        ) from exc


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[._-]", version))


def find_manifests(root: Path) -> dict[str, Path]:
    """The newest version's manifest path per model name under ``root``.

    Versions compare part-wise, numbers numerically (``v10`` after ``v9`` only when
    written ``10`` and ``9``; this project uses plain integers).
    """
    found: dict[str, Path] = {}
    if not root.is_dir():
        return found
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        versions = [v for v in model_dir.iterdir() if (v / MANIFEST_FILE).is_file()]
        if versions:
            newest = max(versions, key=lambda v: _version_key(v.name))
            found[model_dir.name] = newest / MANIFEST_FILE
    return found
