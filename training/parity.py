"""x86-64 / arm64 parity of an ``int8-arm64`` file under qemu user-mode emulation.

The same check as ``tests/integration/test_arm64_parity.py`` (docs/models.md, "Arm64
parity"), as a function the retraining gate calls: run the file on the test rows with the
arm64 build of Python + ONNX Runtime under ``qemu-aarch64-static`` (the sysroot that
``scripts/arm64-sysroot`` builds and caches), and compare with the same file on x86-64:
every row within one quantization step of the last quantized tensor, and the same labels
(classifier) on at least 99.9 % of rows.

When qemu or the sysroot is missing the result says so (``skipped``) instead of failing:
the caller decides whether that is acceptable (``parity="required"`` refuses it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnx
from onnx import numpy_helper
from pydantic import BaseModel, ConfigDict

from training.evaluate import run_onnx
from training.tools import run_tool

__all__ = ["CPUS", "ParityResult", "check_parity", "find_sysroot"]

CPUS = {"neoverse-n1": "sysroot", "cortex-a72": "sysroot-a72"}
"""Emulated CPU -> sysroot folder: the dot-product and the plain NEON int8 kernels."""

MIN_LABEL_AGREEMENT = 0.999
_RUNNER = """
import json, sys
import numpy as np, onnxruntime as ort
o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1
s = ort.InferenceSession(sys.argv[1], o, providers=["CPUExecutionProvider"])
np.save(sys.argv[3], s.run(None, {s.get_inputs()[0].name: np.load(sys.argv[2])})[0])
import platform; print(json.dumps({"machine": platform.machine()}))
"""


class ParityResult(BaseModel):
    """The parity record the gate writes (``gate.json``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Literal["passed", "failed", "skipped"]
    detail: str
    cpus: tuple[str, ...] = ()
    rows: int = 0
    worst_excess: float | None = None
    """Largest ``|arm - x86| - tolerance`` over all rows and CPUs (<= 0 passes)."""


@dataclass(frozen=True, slots=True)
class _Sysroot:
    root: Path
    python: Path
    qemu: Path


def find_sysroot() -> tuple[_Sysroot | None, str]:
    """The cached arm64 sysroot for this onnxruntime and numpy, or ``None`` and why not."""
    qemu = shutil.which("qemu-aarch64-static")
    if qemu is None:
        return None, "skipped: no qemu (qemu-aarch64-static not on PATH; apt-get install " + (
            "qemu-user-static)"
        )
    cache = os.environ.get("IOTSTREAM_ARM64_CACHE") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "iotstream" / "arm64"
    )
    root = Path(cache) / f"ort-{version('onnxruntime')}-numpy-{version('numpy')}"
    if not (root / ".complete").is_file():
        return None, f"skipped: no arm64 sysroot at {root} (build it with scripts/arm64-sysroot)"
    pyv = (root / "env").read_text().strip().split("=", 1)[1]
    python = root / "sysroot" / "usr" / "bin" / f"python{pyv}"
    return _Sysroot(root, python, Path(qemu)), "found"


def _output_step(model_file: Path) -> float:
    """Scale of the last quantized tensor before the float tail (Softmax / error nodes)."""
    graph = onnx.load(str(model_file)).graph
    producers = {out: node for node in graph.node for out in node.output}
    inits = {t.name: t for t in graph.initializer}
    tail = next(n for n in graph.node if n.op_type == "Softmax" or n.name == "ae_residual")
    dq = producers.get(tail.input[0])
    if dq is None or dq.op_type != "DequantizeLinear":
        raise ValueError(f"{model_file}: no DequantizeLinear before {tail.name}")
    return float(numpy_helper.to_array(inits[dq.input[1]]).max())


def _emulate(sysroot: _Sysroot, cpu: str, model: Path, x_path: Path, out: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(sysroot.root / "armsite")
    # The program's path from find_sysroot and our own file paths.
    proc = run_tool(
        [
            str(sysroot.qemu),
            "-cpu",
            cpu,
            "-L",
            str(sysroot.root / CPUS[cpu]),
            str(sysroot.python),
            "-c",
            _RUNNER,
            str(model),
            str(x_path),
            str(out),
        ],
        f"emulated arm64 run on {cpu}",
        timeout=300,
        env=env,
    )
    machine: str = json.loads(proc.stdout.strip().splitlines()[-1])["machine"]
    return machine


def check_parity(
    model: Path,
    kind: Literal["classifier", "autoencoder"],
    x: npt.NDArray[np.float32],
    cpus: tuple[str, ...] = tuple(CPUS),
) -> ParityResult:
    """Run ``model`` (an ``int8-arm64`` file) on ``x`` under each emulated CPU and compare
    with x86-64; ``skipped`` when qemu or the sysroot is missing."""
    sysroot, why = find_sysroot()
    if sysroot is None:
        return ParityResult(status="skipped", detail=why)
    x86 = run_onnx(model, x)
    step = _output_step(model)
    if kind == "classifier":
        # |d softmax_i / d z_j| <= 1/4: one step on every logit moves a probability < step.
        tol: float | npt.NDArray[np.float64] = step + 1e-6
    else:
        # score = mean(d^2); one step on each d moves it by <= 2*step*sqrt(score) + step^2.
        tol = 2.0 * step * np.sqrt(np.maximum(x86, 0.0)) + step**2 + 1e-5 * np.abs(x86)
    worst, problems = -np.inf, []
    with tempfile.TemporaryDirectory(prefix="iotstream-parity-") as tmp:
        x_path = Path(tmp) / "x.npy"
        np.save(x_path, np.ascontiguousarray(x, dtype=np.float32))
        for cpu in cpus:
            out = Path(tmp) / f"{cpu}.npy"
            machine = _emulate(sysroot, cpu, model, x_path, out)
            arm = np.load(out)
            if machine != "aarch64" or arm.shape != x86.shape:
                problems.append(f"{cpu}: ran on {machine}, output shape {arm.shape}")
                continue
            excess = float(np.max(np.abs(arm - x86) - tol))
            worst = max(worst, excess)
            if excess > 0:
                problems.append(f"{cpu}: beyond one quantization step by {excess:.3g}")
            if kind == "classifier":
                agree = float(np.mean(arm.argmax(1) == x86.argmax(1)))
                if agree < MIN_LABEL_AGREEMENT:
                    problems.append(f"{cpu}: labels agree with x86-64 on {agree:.4f} of rows")
    detail = "; ".join(problems) or (
        f"int8-arm64 under qemu matches x86-64 within one quantization step on {len(x)} rows"
    )
    return ParityResult(
        status="failed" if problems else "passed",
        detail=detail,
        cpus=cpus,
        rows=len(x),
        worst_excess=None if worst == -np.inf else worst,
    )
