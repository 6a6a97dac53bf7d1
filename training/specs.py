"""The models the fleet runs: one :class:`ModelSpec` each, the single source of their setup."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from iot_models.manifest import Platform

__all__ = ["SPECS", "ModelSpec", "spec_by_name"]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """How to train one model and which variant each platform runs by default.

    Attributes:
        name: route key and folder name.
        kind: ``classifier`` (probabilities per label) or ``autoencoder`` (reconstruction error).
        description: one line for the manifest and ``models list``.
        hidden: MLP hidden layer sizes.
        max_iter: training epochs (Adam); kept small so a build stays under two minutes.
        version: version folder name.
        train_rows: rows of the training split used (the autoencoder uses its normal rows).
        activation: hidden activation.
        defaults: platform -> (variant, basis); the basis says which measurement decided it
            (``iotstream models bench``, figures in docs/models.md). Kept in source, not
            measured during the build, so a rebuild reproduces the manifest.
    """

    name: str
    kind: Literal["classifier", "autoencoder"]
    description: str
    hidden: tuple[int, ...]
    max_iter: int
    version: str = "1"
    train_rows: int = 20_000
    activation: Literal["relu", "tanh"] = "relu"
    defaults: dict[Platform, tuple[str, str]] = field(default_factory=dict)


_BENCH = "iotstream models bench, 2026-11-26, AMD EPYC with avx512_vnni, 1 intra-op thread"


def _tiny(name: str, ratios: str) -> dict[Platform, tuple[str, str]]:
    x86 = f"{_BENCH}: every int8 variant of {name} is slower than fp32 ({ratios} of fp32 "
    x86 += "rows/s over batch 1-1024): Q/DQ overhead dominates a graph this small"
    arm = (
        "not timed on arm64 hardware (emulated timings mean nothing); follows the x86 result "
        "for this tiny graph. int8-arm64 is built and parity-checked under qemu"
    )
    return {"x86_64-vnni": ("fp32", x86), "x86_64": ("fp32", x86), "arm64": ("fp32", arm)}


_LARGE: dict[Platform, tuple[str, str]] = {
    "x86_64-vnni": (
        "int8-x86_64",
        f"{_BENCH}: int8 2.1x fp32 rows/s at batch 1, 2.5x at 8, 3.6x at 64, 3.8x at 256",
    ),
    "x86_64": (
        "int8-x86_64-novnni",
        "reduce_range U8S8 for x86-64 without VNNI; not timed on such a CPU (this one has "
        "VNNI, where it ran at the same speed as int8-x86_64)",
    ),
    "arm64": (
        "int8-arm64",
        "S8S8 QDQ for the arm64 int8 kernels; chosen from the compute-bound x86 result, not "
        "timed on arm64 hardware",
    ),
}

SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="fault-clf",
        kind="classifier",
        description="pump fault classifier, small MLP 16-32-16-6 (the default route)",
        hidden=(32, 16),
        max_iter=60,
        defaults=_tiny("fault-clf", "0.79-0.94x"),
    ),
    ModelSpec(
        name="vib-ae",
        kind="autoencoder",
        description="autoencoder 16-12-4-12-16 trained on normal rows; score = reconstruction MSE",
        hidden=(12, 4, 12),
        max_iter=80,
        activation="tanh",
        defaults=_tiny("vib-ae", "0.57-0.63x"),
    ),
    ModelSpec(
        name="fault-clf-large",
        kind="classifier",
        description="pump fault classifier, large MLP 16-1024-512-6 (where int8 pays off)",
        hidden=(1024, 512),
        max_iter=12,
        defaults=_LARGE,
    ),
)


def spec_by_name(name: str) -> ModelSpec:
    """The spec called ``name``; ``KeyError`` lists the known names."""
    for spec in SPECS:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown model {name!r}; known: {[s.name for s in SPECS]}")
