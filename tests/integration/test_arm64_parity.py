"""Every model's ``int8-arm64`` variant under emulated arm64 matches x86-64, and fp32's labels.

The arm64 build of Python + ONNX Runtime runs under ``qemu-aarch64-static`` (sysroot built and
cached by ``scripts/arm64-sysroot``, which installs qemu-user-static when it is missing and
we are root). Never skipped: without qemu and without root the test fails with the command
to run. Two CPU models cover ONNX Runtime's arm64 int8 kernel families: Neoverse-N1 (dot
product) and Cortex-A72 (plain NEON).
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from onnx import numpy_helper

from iot_models.manifest import Manifest, find_manifests, read_manifest
from iot_models.sensors import make_dataset
from tests.harness.processes import setup_script
from training.data import SEEDS
from training.evaluate import accuracy, run_onnx

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"
RUNNER = Path(__file__).with_name("arm64_runner.py")
VARIANT = "int8-arm64"
TEST_ROWS = 10_000
CPUS = {"neoverse-n1": "sysroot", "cortex-a72": "sysroot-a72"}


@dataclass(frozen=True)
class ArmRun:
    """Outputs of one emulated run: model name -> output array."""

    cpu: str
    machine: str
    outputs: dict[str, npt.NDArray[np.float32]]


@pytest.fixture(scope="module")
def sysroot() -> Path:
    """The cached arm64 sysroot (built on first use, ~30 s; later runs reuse it)."""
    proc = setup_script(
        "arm64-sysroot",
        "Install qemu-user-static (scripts/bootstrap qemu-user-static) and retry.",
    )
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def manifests() -> dict[str, Manifest]:
    return {name: read_manifest(path) for name, path in find_manifests(MODELS).items()}


@pytest.fixture(scope="module")
def test_split() -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    return make_dataset(TEST_ROWS, SEEDS["test"])


@pytest.fixture(scope="module", params=sorted(CPUS))
def arm_run(
    request: pytest.FixtureRequest,
    sysroot: Path,
    manifests: dict[str, Manifest],
    test_split: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]],
    tmp_path_factory: pytest.TempPathFactory,
) -> ArmRun:
    """All models' arm64 variants on the test split, in one emulated process per CPU."""
    cpu: str = request.param
    work = tmp_path_factory.mktemp(f"arm64-{cpu}")
    x_path = work / "x.npy"
    np.save(x_path, test_split[0])
    jobs = [
        {
            "model": str(MODELS / name / m.version / m.variants[VARIANT].file),
            "input": str(x_path),
            "output": str(work / f"{name}.npy"),
        }
        for name, m in manifests.items()
    ]
    (work / "jobs.json").write_text(json.dumps(jobs))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(sysroot / "armsite")  # on the qemu command only (ARM64.md #3)
    pyv = (sysroot / "env").read_text().strip().split("=", 1)[1]
    proc = subprocess.run(
        [
            "qemu-aarch64-static",
            "-cpu",
            cpu,
            "-L",
            str(sysroot / CPUS[cpu]),
            str(sysroot / "sysroot" / "usr" / "bin" / f"python{pyv}"),
            str(RUNNER),
            str(work / "jobs.json"),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, f"emulated run failed ({proc.returncode}): {proc.stderr[-2000:]}"
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    outputs = {name: np.load(work / f"{name}.npy") for name in manifests}
    return ArmRun(cpu, info["machine"], outputs)


def _output_step(model_file: Path, manifest: Manifest) -> float:
    """Scale of the last quantized tensor before the float tail (Softmax / error nodes)."""
    graph = onnx.load(str(model_file)).graph
    producers = {out: node for node in graph.node for out in node.output}
    inits = {t.name: t for t in graph.initializer}
    tail = next(n for n in graph.node if n.op_type == "Softmax" or n.name == "ae_residual")
    dq = producers.get(tail.input[0])
    assert dq is not None and dq.op_type == "DequantizeLinear", "expected a DQ before the tail"
    return float(numpy_helper.to_array(inits[dq.input[1]]).max())


def test_emulation_reports_aarch64(arm_run: ArmRun) -> None:
    assert arm_run.machine == "aarch64"


@pytest.mark.parametrize("name", ["fault-clf", "vib-ae", "fault-clf-large"])
def test_arm64_matches_x86_within_one_step(
    arm_run: ArmRun,
    manifests: dict[str, Manifest],
    test_split: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]],
    name: str,
) -> None:
    m = manifests[name]
    path = MODELS / name / m.version / m.variants[VARIANT].file
    x86 = run_onnx(path, test_split[0])
    arm = arm_run.outputs[name]
    assert arm.shape == x86.shape
    step = _output_step(path, m)
    if m.output.kind == "classifier":
        # |d softmax_i / d z_j| <= 1/4: one step on every logit moves a probability < step.
        tol: float | npt.NDArray[np.float64] = step + 1e-6
        assert np.mean(arm.argmax(1) == x86.argmax(1)) >= 0.999
    else:
        # score = mean(d^2); one step on each d moves it by <= 2*step*sqrt(score) + step^2.
        tol = 2.0 * step * np.sqrt(np.maximum(x86, 0.0)) + step**2 + 1e-5 * np.abs(x86)
    worst = float(np.max(np.abs(arm - x86) - tol))
    assert worst <= 0.0, f"{name} on {arm_run.cpu}: beyond one quantization step by {worst}"
    # In practice the integer parts agree exactly and only the float tail (Softmax, error
    # arithmetic) differs in the last bits: hold nearly every row to float tolerance.
    close = np.isclose(arm, x86, rtol=1e-4, atol=1e-5)
    rows_close = close.all(axis=1) if close.ndim == 2 else close
    assert rows_close.mean() >= 0.999, f"{name}: {1 - rows_close.mean():.4%} rows differ"


@pytest.mark.parametrize("name", ["fault-clf", "vib-ae", "fault-clf-large"])
def test_arm64_labels_within_gate_of_fp32(
    arm_run: ArmRun,
    manifests: dict[str, Manifest],
    test_split: tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]],
    name: str,
) -> None:
    m = manifests[name]
    x, y = test_split
    fp32 = run_onnx(MODELS / name / m.version / m.variants["fp32"].file, x)
    acc = accuracy(m.output.kind, fp32, arm_run.outputs[name], y, m.output.threshold)
    assert acc.agreement_with_fp32 >= m.gate.min_agreement
    if m.gate.max_macro_f1_drop_points is not None:
        assert acc.macro_f1_delta_points is not None
        assert acc.macro_f1_delta_points <= m.gate.max_macro_f1_drop_points
    if m.gate.max_auc_drop_points is not None:
        assert acc.auc_delta_points is not None
        assert acc.auc_delta_points <= m.gate.max_auc_drop_points
