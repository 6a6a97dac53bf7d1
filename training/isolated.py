"""Train and export in a child process whose OpenBLAS kernel is pinned.

OpenBLAS picks its GEMM kernel from the CPU (or ``OPENBLAS_CORETYPE``) when numpy loads, and
an AVX-512 kernel sums in another order than an AVX2 one: the trained weights, and so every
artifact's sha256, would depend on the build machine and its environment. The child always
runs with ``OPENBLAS_CORETYPE=Haswell`` (AVX2, present on every x86-64 server CPU of the
last decade) so the build reproduces across x86-64 machines. Usage of the child:
``python -m training.isolated MODEL_NAME OUT.onnx``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import onnx

from iot_models.variants import cpu_flags
from training.data import make_splits
from training.export import export_autoencoder, export_classifier
from training.specs import ModelSpec, spec_by_name
from training.train import fit

__all__ = [
    "BLAS_CORETYPE",
    "blas_coretype",
    "pinned_env",
    "train_and_export",
    "train_and_export_pinned",
]

BLAS_CORETYPE = "Haswell"
_ROOT = Path(__file__).resolve().parent.parent


def blas_coretype() -> str:
    """The OpenBLAS kernel the child will use: pinned on x86-64 with AVX2, else automatic."""
    if platform.machine().lower() in ("x86_64", "amd64") and "avx2" in cpu_flags():
        return BLAS_CORETYPE
    return "auto"


def train_and_export(spec: ModelSpec, out: Path) -> None:
    """Fit ``spec`` on the training split and write its fp32 ONNX file (in this process)."""
    pipeline = fit(spec, make_splits().train)
    proto = (
        export_classifier(pipeline) if spec.kind == "classifier" else export_autoencoder(pipeline)
    )
    onnx.save(proto, str(out))


def pinned_env() -> tuple[dict[str, str], str]:
    """The environment of a training child process: this one's, with the OpenBLAS kernel
    pinned (:func:`blas_coretype`; reproducible weights) and this checkout on
    ``PYTHONPATH``; and the kernel's name."""
    env = dict(os.environ)
    coretype = blas_coretype()
    if coretype == "auto":
        env.pop("OPENBLAS_CORETYPE", None)
    else:
        env["OPENBLAS_CORETYPE"] = coretype
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH")) if p)
    return env, coretype


def train_and_export_pinned(spec: ModelSpec, out: Path) -> None:
    """:func:`train_and_export` in a child process with the pinned OpenBLAS kernel.

    Raises:
        RuntimeError: the child failed (its stderr is in the message).
    """
    env, _ = pinned_env()
    # Fixed module and arguments from our own spec table; no shell.
    proc = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "training.isolated", spec.name, str(out)],
        env=env,
        cwd=_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"training {spec.name} failed:\n{proc.stderr[-4000:]}")


if __name__ == "__main__":
    train_and_export(spec_by_name(sys.argv[1]), Path(sys.argv[2]))
