"""The manifest schema: what it accepts, what it refuses, how the repository is read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from iot_models.manifest import (
    Manifest,
    ManifestError,
    ModelNotFoundError,
    find_manifests,
    read_manifest,
)

COMMITTED = Path(__file__).resolve().parents[2] / "models" / "fault-clf" / "1" / "manifest.json"


def _doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(COMMITTED.read_text())
    return doc


def test_committed_manifests_follow_the_schema() -> None:
    found = find_manifests(COMMITTED.parents[2])
    assert set(found) >= {"fault-clf", "vib-ae", "fault-clf-large"}
    for path in found.values():
        m = read_manifest(path)
        assert m.input.dtype == "float32"
        assert m.input.shape == (None, len(m.input.feature_names))
        assert {"fp32", "int8-x86_64", "int8-x86_64-novnni", "int8-arm64"} <= set(m.variants)
        assert set(m.defaults) == {"x86_64-vnni", "x86_64", "arm64"}
        assert m.calibration.rows == sum(m.calibration.composition.values())


def test_round_trip() -> None:
    m = Manifest.model_validate(_doc())
    assert Manifest.model_validate_json(m.model_dump_json()) == m


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["variants"].pop("fp32"), "fp32"),
        (lambda d: d["defaults"]["arm64"].update(variant="int8-mips"), "unknown variant"),
        (lambda d: d["output"].update(normal_label="fine"), "normal_label"),
        (lambda d: d["input"].update(shape=[None, 15]), "width"),
        (lambda d: d["variants"]["fp32"].update(sha256="abc"), "sha256"),
        (lambda d: d.update(schema_version=2), "schema_version"),
        (lambda d: d.update(surprise=1), "surprise"),
        (lambda d: d["input"].update(dtype="float64"), "dtype"),
    ],
)
def test_schema_refuses(mutate: Any, message: str) -> None:
    doc = _doc()
    mutate(doc)
    with pytest.raises(ValidationError, match=message):
        Manifest.model_validate(doc)


def test_read_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="models build"):
        read_manifest(tmp_path / "manifest.json")
    bad = tmp_path / "manifest.json"
    bad.write_text("{not json")
    with pytest.raises(ManifestError, match="not a valid model manifest"):
        read_manifest(bad)


def test_find_manifests_takes_the_newest_version(tmp_path: Path) -> None:
    for version in ("1", "2", "10"):
        d = tmp_path / "m" / version
        d.mkdir(parents=True)
        (d / "manifest.json").write_text("{}")
    (tmp_path / "m" / "11").mkdir()  # no manifest: not a version
    assert find_manifests(tmp_path) == {"m": tmp_path / "m" / "10" / "manifest.json"}
    assert find_manifests(tmp_path / "absent") == {}
