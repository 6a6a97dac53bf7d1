"""``iotstream models build`` reproduces the committed repository (bounded: one build)."""

from __future__ import annotations

from pathlib import Path

import pytest

from iot_models.manifest import find_manifests, read_manifest
from iotstream.cli import main
from training.build import build
from training.reproduce import compare_trees

MODELS = Path(__file__).resolve().parents[2] / "models"
NAMES = ["fault-clf", "vib-ae", "fault-clf-large"]


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All models rebuilt from source into a temporary repository (~25 s on 2 cores)."""
    root = tmp_path_factory.mktemp("rebuilt")
    build(root, NAMES, log=lambda _: None)
    return root


def test_rebuild_reproduces_every_file_and_manifest(rebuilt: Path) -> None:
    assert compare_trees(MODELS, rebuilt, NAMES) == []
    for name in NAMES:
        committed = read_manifest(find_manifests(MODELS)[name])
        fresh = read_manifest(find_manifests(rebuilt)[name])
        assert {v: e.sha256 for v, e in fresh.variants.items()} == {
            v: e.sha256 for v, e in committed.variants.items()
        }


def test_compare_trees_notices_a_difference(rebuilt: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copytree(rebuilt, tmp_path / "copy")
    manifest = tmp_path / "copy" / "vib-ae" / "1" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"threshold": 0.', '"threshold": 1.'))
    problems = compare_trees(MODELS, tmp_path / "copy", ["vib-ae"])
    assert problems == ["vib-ae: manifest field 'output' differs"]


def test_cli_verify_and_list(rebuilt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "verify", "--root", str(rebuilt)]) == 0
    assert main(["models", "list", "--root", str(rebuilt)]) == 0
    out = capsys.readouterr().out
    assert "fault-clf-large v1 [classifier]" in out
    assert "int8-arm64" in out
    target = rebuilt / "fault-clf" / "1" / "int8-x86_64.onnx"
    target.write_bytes(target.read_bytes() + b"\0")
    assert main(["models", "verify", "--root", str(rebuilt), "fault-clf"]) == 1
    assert "sha256 differs" in capsys.readouterr().err


def test_cli_bench_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["models", "bench", "fault-clf", "--batches", "1", "8", "--threads", "1"]
    assert main([*args, "--min-time", "0.03", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "models_bench.json").is_file()
    table = (tmp_path / "models_bench.md").read_text()
    assert "| int8-x86_64 |" in table
    assert "batch 8" in capsys.readouterr().out
