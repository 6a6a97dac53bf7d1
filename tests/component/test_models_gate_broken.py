"""Deliberately broken quantizations must be caught by the accuracy gate."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from iot_models.manifest import read_manifest
from training import build as build_module
from training.build import build, quantizable_exclusions
from training.data import Split, Splits, make_splits
from training.evaluate import accuracy, run_onnx
from training.gate import CLASSIFIER_LIMITS, GateError, violations
from training.quantize import RECIPES, ArrayCalibrationReader, preprocess, quantize

MODEL = Path(__file__).resolve().parents[2] / "models" / "fault-clf" / "1"


@pytest.fixture(scope="module")
def splits() -> Splits:
    return make_splits(train_rows=100, calibration_rows=2000, test_rows=4000)


@pytest.fixture(scope="module")
def preprocessed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pre") / "pre.onnx"
    preprocess(MODEL / "fp32.onnx", out)
    return out


def _gate(path: Path, splits: Splits) -> list[str]:
    fp32 = run_onnx(MODEL / "fp32.onnx", splits.test.x)
    acc = accuracy("classifier", fp32, run_onnx(path, splits.test.x), splits.test.y, 0.5)
    return violations(CLASSIFIER_LIMITS, path.stem, acc)


def test_sound_quantization_passes(preprocessed: Path, splits: Splits, tmp_path: Path) -> None:
    out = tmp_path / "int8.onnx"
    reader = ArrayCalibrationReader("features", splits.calibration.x)
    quantize(preprocessed, out, RECIPES[0], reader, quantizable_exclusions(preprocessed))
    assert _gate(out, splits) == []


def test_calibration_on_constant_data_is_caught(
    preprocessed: Path, splits: Splits, tmp_path: Path
) -> None:
    constant = np.repeat(splits.calibration.normal.x[:1], 512, axis=0)
    out = tmp_path / "int8-constant-calib.onnx"
    reader = ArrayCalibrationReader("features", constant)
    quantize(preprocessed, out, RECIPES[0], reader, quantizable_exclusions(preprocessed))
    problems = _gate(out, splits)
    assert any("macro-F1 drop" in p for p in problems)
    assert any("agreement" in p for p in problems)


def test_corrupted_activation_scale_is_caught(tmp_path: Path, splits: Splits) -> None:
    """The input activations' scale shrunk 10x: most standardised inputs now saturate.

    (Scaling one ReLU layer's weights would not do: the network is nearly homogeneous, so the
    arg-max barely moves, and the gate rightly lets it through.)
    """
    model = onnx.load(str(MODEL / "int8-x86_64.onnx"))
    inits = {t.name: t for t in model.graph.initializer}
    # The first activation QuantizeLinear quantizes the standardised features.
    first_q = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    scale = inits[first_q.input[1]]
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 0.1, scale.name))
    out = tmp_path / "int8-bad-scale.onnx"
    onnx.save(model, str(out))
    problems = _gate(out, splits)
    assert any("macro-F1 drop" in p for p in problems)


def test_build_fails_and_writes_nothing_when_the_gate_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = make_splits()
    calib = real.calibration
    constant = Split(calib.name, calib.seed, np.repeat(calib.x[:1], len(calib.x), 0), calib.y)
    monkeypatch.setattr(build_module, "make_splits", lambda: replace(real, calibration=constant))
    with pytest.raises(GateError, match="fault-clf: accuracy gate failed"):
        build(tmp_path, ["fault-clf"], log=lambda _: None)
    assert not (tmp_path / "fault-clf").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_committed_manifest_recorded_the_gate() -> None:
    manifest = read_manifest(MODEL / "manifest.json")
    assert manifest.gate == CLASSIFIER_LIMITS
