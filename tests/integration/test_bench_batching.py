"""``iotstream bench batching`` runs both policies end to end and writes a sound report (a
bounded smoke run on real Mosquitto and Redis; the figures are measured, never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.batching_bench import HOPS, main

pytestmark = pytest.mark.integration


def test_a_tiny_batching_bench_compares_both_policies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "batching.json"
    assert main(["--rates", "500", "--seconds", "1", "--repeats", "2", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    runs = [(r["scenario"], r["extra"]["repeat"]) for r in report["results"]]
    assert runs == [("fixed", 0), ("adaptive", 0), ("adaptive", 1), ("fixed", 1)], "alternating"
    summary = {x["policy"]: x for x in report["summary"]}
    assert summary["adaptive"]["runs"] == summary["fixed"]["runs"] == 2
    assert summary["fixed"]["cpu_vs_fixed"] == 1.0
    lo, hi = summary["adaptive"]["p99_ms_range"]
    assert lo <= summary["adaptive"]["p99_ms"] <= hi
    for r in report["results"]:
        assert r["published"] > 0
        assert r["stored"] == r["published"], f"{r['scenario']}: loss or duplicates"
        assert r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["worker_cpu_us_per_reading"] > 0
        assert r["extra"]["mean_batch"] >= 1
        # the parts add up to each reading's total: the slowest 1 %'s parts to their mean
        tail = r["extra"]["hops_p99_tail_ms"]
        assert set(tail) == set(HOPS)
        assert r["p99_ms"] - 0.01 <= sum(tail.values()) <= r["max_ms"] + 0.01
        assert all(v >= 0 for v in r["extra"]["hops_median_ms"].values())
    printed = capsys.readouterr().out
    assert "vs fixed" in printed
    assert "medians of 2 pairs" in printed
    assert "the slowest 1 %" in printed
    assert str(out) in printed
