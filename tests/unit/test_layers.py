"""Every import arrow between the top-level packages points down a floor.

Floors (docs/architecture.md, "Module map"):

0. ``iot_contract``: the wire contract; ``iot_batching``: the pure batch-cut policies;
   ``iot_metrics``: Prometheus metrics declared in catalogue files.
1. ``iot_mqtt`` (MQTT protocol code), ``iot_models`` (model artefacts, the inference core).
2. the services and the training code: ``inference_worker``, ``gateway``, ``device_sim``,
   ``training``.
3. ``iotstream`` (command line, local tooling) and ``bench``; ``bench`` uses ``iotstream``'s
   local tooling, and ``iotstream bench`` loads the benchmark modules by name only when run.

Every import counts: module level, inside functions, and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOORS: dict[str, int] = {
    "iot_contract": 0,
    "iot_batching": 0,
    "iot_metrics": 0,
    "iot_mqtt": 1,
    "iot_models": 1,
    "inference_worker": 2,
    "gateway": 2,
    "device_sim": 2,
    "training": 2,
    "iotstream": 3,
    "bench": 3,
}
SIDEWAYS_ALLOWED = {("bench", "iotstream")}


def imported_packages(path: Path) -> set[str]:
    """Top-level project packages a module imports (statically)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & FLOORS.keys()


def arrows() -> list[tuple[str, str, str]]:
    """``(importing package, imported package, file)`` for every cross-package import."""
    out = []
    for package in FLOORS:
        for path in sorted((ROOT / package).rglob("*.py")):
            for target in imported_packages(path):
                if target != package:
                    out.append((package, target, str(path.relative_to(ROOT))))
    return out


def test_the_floors_cover_every_package_in_the_distribution() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(FLOORS)


def test_every_import_arrow_points_down() -> None:
    upward = [
        f"{file}: {src} (floor {FLOORS[src]}) imports {dst} (floor {FLOORS[dst]})"
        for src, dst, file in arrows()
        if FLOORS[dst] >= FLOORS[src] and (src, dst) not in SIDEWAYS_ALLOWED
    ]
    assert upward == []


def test_the_checker_sees_imports_inside_functions_and_type_checking(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from gateway.auth import Principal\n"
        "def f():\n    import iotstream.cli\n"
        "from . import sibling\n"
    )
    assert imported_packages(module) == {"gateway", "iotstream"}


@pytest.mark.parametrize("service", ["inference_worker", "gateway", "device_sim", "training"])
def test_no_service_imports_the_command_line(service: str) -> None:
    assert [f for src, dst, f in arrows() if src == service and dst == "iotstream"] == []
