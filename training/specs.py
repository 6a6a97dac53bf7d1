"""The models the fleet runs: one :class:`ModelSpec` each, the single source of their setup."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from inference_worker.model_repo import Platform

__all__ = ["SPECS", "ModelSpec", "spec_by_name"]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """How to train one model and which variant each platform runs by default.

    Attributes:
        name: route key and folder name.
        version: version folder name.
        kind: ``classifier`` (probabilities per label) or ``autoencoder`` (reconstruction error).
        description: one line for the manifest and ``models list``.
        hidden: MLP hidden layer sizes.
        max_iter: training epochs (Adam); kept small so a build stays under two minutes.
        train_rows: rows of the training split used (the autoencoder uses its normal rows).
        activation: hidden activation.
        defaults: platform -> (variant, basis); the basis says which measurement decided it
            (``iotstream models bench``, figures in docs/models.md). Kept in source, not
            measured during the build, so a rebuild reproduces the manifest.
    """

    name: str
    version: str
    kind: Literal["classifier", "autoencoder"]
    description: str
    hidden: tuple[int, ...]
    max_iter: int
    train_rows: int
    activation: Literal["relu", "tanh"] = "relu"
    defaults: dict[Platform, tuple[str, str]] = field(default_factory=dict)


_TINY_X86 = (
    "fp32",
    "models bench on AMD EPYC (avx512_vnni), 1 thread: int8 slower than fp32 at every "
    "batch size (per-call overhead of Q/DQ dominates a tiny graph)",
)
_TINY_ARM = (
    "fp32",
    "not timed on arm64 hardware (qemu timings are meaningless); follows the x86 result for "
    "this tiny graph. int8-arm64 is built and parity-checked under emulation",
)
_LARGE_X86 = (
    "int8-x86_64",
    "models bench on AMD EPYC (avx512_vnni), 1 thread: int8 several times fp32 rows/s at "
    "batch >= 8 (see docs/models.md)",
)

SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="fault-clf",
        version="1",
        kind="classifier",
        description="pump fault classifier, small MLP 16-32-16-6 (the default route)",
        hidden=(32, 16),
        max_iter=60,
        train_rows=20_000,
        defaults={"x86_64-vnni": _TINY_X86, "x86_64": _TINY_X86, "arm64": _TINY_ARM},
    ),
    ModelSpec(
        name="vib-ae",
        version="1",
        kind="autoencoder",
        description="autoencoder 16-12-4-12-16 trained on normal rows; score = reconstruction MSE",
        hidden=(12, 4, 12),
        max_iter=80,
        train_rows=20_000,
        activation="tanh",
        defaults={"x86_64-vnni": _TINY_X86, "x86_64": _TINY_X86, "arm64": _TINY_ARM},
    ),
    ModelSpec(
        name="fault-clf-large",
        version="1",
        kind="classifier",
        description="pump fault classifier, large MLP 16-1024-512-6 (where int8 pays off)",
        hidden=(1024, 512),
        max_iter=12,
        train_rows=20_000,
        defaults={
            "x86_64-vnni": _LARGE_X86,
            "x86_64": (
                "int8-x86_64-novnni",
                "reduce_range U8S8 for CPUs without VNNI; not timed here (this CPU has VNNI)",
            ),
            "arm64": (
                "int8-arm64",
                "S8S8 QDQ, the arm64 int8 kernels; chosen by the x86 compute-bound result, "
                "not timed on arm64 hardware",
            ),
        },
    ),
)


def spec_by_name(name: str) -> ModelSpec:
    """The spec called ``name``; ``KeyError`` lists the known names."""
    for spec in SPECS:
        if spec.name == name:
            return spec
    raise KeyError(f"unknown model {name!r}; known: {[s.name for s in SPECS]}")
