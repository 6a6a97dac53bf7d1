"""``iotstream bench swap`` runs end to end on real Mosquitto and Redis and writes a sound
report (a bounded smoke run; the figures are measured, never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.swap_bench import main

pytestmark = pytest.mark.integration


def test_a_tiny_swap_bench_swaps_and_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "swap.json"
    args = ["--seconds", "4", "--rate", "500", "--every", "1", "--model", "fault-clf"]
    assert main([*args, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    for name in ("steady", "swapping"):
        run = report[name]
        assert run["published"] > 0
        assert run["stored"] == run["published"], f"{name}: loss or duplicates"
    assert report["steady"]["alias_moves"] == 0
    assert report["steady"]["extra"]["per_version"].keys() == {"1"}
    swapping = report["swapping"]
    assert swapping["alias_moves"] >= 1
    assert swapping["extra"]["swaps_in_stream"] == swapping["alias_moves"]
    assert swapping["extra"]["per_version"].keys() == {"1", "2"}
    assert swapping["extra"]["after_swap_readings"] > 0
