"""``iotstream bench oip`` runs and writes a sound report (a bounded smoke run: a few gRPC
clients for a second per mode; the figures are measured, only their shape is asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.oip_bench import main

pytestmark = pytest.mark.integration


def test_a_tiny_oip_bench_shows_batches_forming(tmp_path: Path) -> None:
    out = tmp_path / "oip.json"
    assert main(["--clients", "8", "--seconds", "1", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    on, off = report["results"]
    assert (on["mode"], off["mode"]) == ("batched", "off")
    assert on["readings"] > 0 and off["readings"] > 0
    assert on["errors"] == 0 and off["errors"] == 0
    assert off["mean_batch"] == 1.0
    assert on["mean_batch"] > 1.0  # 8 clients waiting at once do share batches
    assert report["ratio_batched_to_off"] == pytest.approx(
        on["readings_per_s"] / off["readings_per_s"], rel=0.01
    )
