"""Loading the committed models through the runtime path the worker and gateway use."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from iot_models.manifest import (
    HashMismatchError,
    ManifestError,
    ModelNotFoundError,
    VariantNotFoundError,
    find_manifests,
    read_manifest,
)
from iot_models.model import Model
from iot_models.onnx_model import OnnxModel, load_models
from iot_models.sensors import FEATURE_NAMES, LABELS, make_dataset
from iot_models.variants import current_platform
from training.data import SEEDS
from training.evaluate import accuracy
from training.gate import violations

MODELS = Path(__file__).resolve().parents[2] / "models"
NAMES = ("fault-clf", "vib-ae", "fault-clf-large")


@pytest.fixture(scope="module")
def models() -> dict[str, Model]:
    return load_models(MODELS)


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    x, _ = make_dataset(300, seed=99)
    return x


def test_loads_every_model_with_its_platform_default(models: dict[str, Model]) -> None:
    assert set(models) == set(NAMES)
    platform = current_platform()
    for name, model in models.items():
        manifest = read_manifest(find_manifests(MODELS)[name])
        assert model.info.name == name
        assert model.info.feature_names == FEATURE_NAMES
        assert model.info.n_features == 16
        expected = manifest.defaults[platform].variant if platform else "fp32"
        assert model.info.variant == expected


def test_classifier_outputs(models: dict[str, Model], rows: np.ndarray) -> None:
    model = models["fault-clf"]
    assert model.info.kind == "classifier"
    assert model.info.labels == LABELS
    outputs = model.predict(rows)
    assert len(outputs) == len(rows)
    for out in outputs:
        p = out.probabilities
        assert p is not None
        assert abs(sum(p.values()) - 1.0) < 1e-4
        assert out.label == max(p, key=lambda k: p[k])
        assert out.score == pytest.approx(1.0 - p["normal"], abs=1e-6)
        assert out.anomaly == (out.score > 0.5)
    assert {o.label for o in outputs} - {"normal"}, "the rows hold faults; some must show"


def test_autoencoder_outputs(models: dict[str, Model], rows: np.ndarray) -> None:
    model = models["vib-ae"]
    assert model.info.kind == "autoencoder"
    threshold = read_manifest(find_manifests(MODELS)["vib-ae"]).output.threshold
    outputs = model.predict(rows)
    assert len(outputs) == len(rows)
    assert all(o.score >= 0.0 and o.label is None for o in outputs)
    assert all(o.anomaly == (o.score > threshold) for o in outputs)
    assert 0 < sum(o.anomaly for o in outputs) < len(outputs)


def test_predict_is_thread_safe(models: dict[str, Model], rows: np.ndarray) -> None:
    model = models["fault-clf-large"]
    batches = [rows[i : i + 64] for i in range(0, 256, 64)]
    expected = [model.predict(b) for b in batches]
    got: dict[int, list[object]] = {}

    def work(i: int) -> None:
        for _ in range(20):
            got[i] = list(model.predict(batches[i]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(len(batches))] == expected


@pytest.mark.parametrize("name", NAMES)
def test_int8_agrees_with_fp32_on_the_test_split(name: str) -> None:
    """Recomputed here through OnnxModel: the manifest's figures, and the gate holds."""
    path = find_manifests(MODELS)[name]
    manifest = read_manifest(path)
    x, y = make_dataset(manifest.test_split["rows"], SEEDS["test"])  # type: ignore[arg-type]
    fp32 = OnnxModel(manifest, path.parent, "fp32").run(x)
    for variant, entry in manifest.variants.items():
        raw = OnnxModel(manifest, path.parent, variant).run(x)
        acc = accuracy(manifest.output.kind, fp32, raw, y, manifest.output.threshold)
        assert acc == entry.accuracy
        if variant != "fp32":
            assert violations(manifest.gate, variant, acc) == []
            assert acc.agreement_with_fp32 >= 0.98


def test_overrides(rows: np.ndarray) -> None:
    loaded = load_models(MODELS, ["fault-clf"], variant_override="int8-arm64")
    assert loaded["fault-clf"].info.variant == "int8-arm64"
    per_model = load_models(MODELS, variant_override={"fault-clf": "int8-x86_64-novnni"})
    assert per_model["fault-clf"].info.variant == "int8-x86_64-novnni"
    assert (
        per_model["vib-ae"].info.variant == load_models(MODELS, ["vib-ae"])["vib-ae"].info.variant
    )
    with pytest.raises(VariantNotFoundError, match="available"):
        load_models(MODELS, ["fault-clf"], variant_override="int8-mips")


def test_bad_batch_is_a_model_error(models: dict[str, Model]) -> None:
    from iot_models.manifest import ModelError

    with pytest.raises(ModelError, match=r"expects \(n, 16\) float32"):
        models["fault-clf"].predict(np.zeros((2, 15), dtype=np.float32))
    doubles = np.zeros((2, 16), dtype=np.float64)
    assert len(models["fault-clf"].predict(doubles)) == 2  # type: ignore[arg-type]


def test_missing_models(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="'nope' not found"):
        load_models(MODELS, ["nope"])
    with pytest.raises(ModelNotFoundError, match="models build"):
        load_models(tmp_path)


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    shutil.copytree(MODELS / "fault-clf", tmp_path / "fault-clf")
    return tmp_path


def test_corrupt_file_is_refused(repo_copy: Path) -> None:
    target = repo_copy / "fault-clf" / "1" / "fp32.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(HashMismatchError, match=r"fp32.onnx.*models build"):
        load_models(repo_copy, variant_override="fp32")
    # Other variants of the same version still load.
    assert load_models(repo_copy, variant_override="int8-x86_64")["fault-clf"]


def test_missing_file_is_refused(repo_copy: Path) -> None:
    (repo_copy / "fault-clf" / "1" / "int8-arm64.onnx").unlink()
    with pytest.raises(VariantNotFoundError, match="missing"):
        load_models(repo_copy, variant_override="int8-arm64")


def test_broken_manifest_is_refused(repo_copy: Path) -> None:
    path = repo_copy / "fault-clf" / "1" / "manifest.json"
    doc = json.loads(path.read_text())
    del doc["input"]
    path.write_text(json.dumps(doc))
    with pytest.raises(ManifestError, match="input"):
        load_models(repo_copy)
