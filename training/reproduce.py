"""Compare a fresh build with the repository: what "reproducible" means here.

Compared: every variant file byte for byte (sha256) and every manifest field except
``build`` (provenance: git revision, dirty flag, tool versions). Same machine class and the
pinned tool versions give identical bytes; see docs/models.md for when they may not.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from iot_models.manifest import find_manifests, read_manifest

__all__ = ["compare_trees"]


def compare_trees(expected_root: Path, actual_root: Path, names: Sequence[str]) -> list[str]:
    """Differences between two repositories for ``names`` (empty when they match)."""
    expected, actual = find_manifests(expected_root), find_manifests(actual_root)
    problems: list[str] = []
    for name in names:
        if name not in expected or name not in actual:
            problems.append(f"{name}: missing from one side")
            continue
        a, b = read_manifest(expected[name]), read_manifest(actual[name])
        for variant in sorted(set(a.variants) | set(b.variants)):
            ea, eb = a.variants.get(variant), b.variants.get(variant)
            if ea is None or eb is None or ea.sha256 != eb.sha256:
                problems.append(
                    f"{name}/{variant}: sha256 {ea.sha256[:12] if ea else '-'} in the repo, "
                    f"{eb.sha256[:12] if eb else '-'} rebuilt"
                )
        da = a.model_dump(exclude={"build"})
        db = b.model_dump(exclude={"build"})
        for key in sorted(set(da) | set(db)):
            if da.get(key) != db.get(key) and key != "variants":
                problems.append(f"{name}: manifest field {key!r} differs")
        if da["variants"] != db["variants"] and not any(p.startswith(name) for p in problems):
            problems.append(f"{name}: variant metadata differs (accuracy or sizes)")
    return problems
