"""``iotstream bench batch-cost`` measures the per-batch CPU of scoring and storing (a real
Redis it starts itself) and writes a sound report (figures measured, never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.batch_cost import SIZES, main

pytestmark = pytest.mark.integration


def test_a_tiny_batch_cost_run_fits_both_steps_at_each_gap(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "batch_cost.json"
    assert main(["--batches", "20", "--gaps-ms", "0,1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {(p["gap_ms"], p["batch"]) for p in report["points"]} == {
        (gap, size) for gap in (0.0, 1.0) for size in SIZES
    }
    assert all(p["infer_us"] > 0 and p["store_us"] > 0 for p in report["points"])
    assert {(f["gap_ms"], f["step"]) for f in report["fits"]} == {
        (gap, step) for gap in (0.0, 1.0) for step in ("infer", "store")
    }
    assert str(out) in capsys.readouterr().out
