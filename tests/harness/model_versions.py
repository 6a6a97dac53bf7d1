"""Model versions for lifecycle tests: copies of the committed ONNX models under a new
version number (same files, so same sha256 and same outputs; only the version differs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from iot_models.manifest import MANIFEST_FILE

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "models"


def make_version(dest_root: Path, version: str, name: str = "fault-clf") -> Path:
    """``dest_root/<name>/<version>/``: the committed version 1 relabelled ``version``."""
    source = MODELS / name / "1"
    dest = dest_root / name / version
    dest.mkdir(parents=True)
    for path in source.iterdir():
        if path.suffix == ".onnx":
            shutil.copyfile(path, dest / path.name)
    manifest = json.loads((source / MANIFEST_FILE).read_text())
    manifest["version"] = version
    (dest / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return dest
