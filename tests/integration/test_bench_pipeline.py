"""``iotstream bench pipeline`` runs end to end and writes a sound report (a bounded smoke
run on real Mosquitto and Redis; the figures themselves are measured, never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.pipeline_bench import main

pytestmark = pytest.mark.integration


def test_a_tiny_pipeline_bench_writes_a_complete_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pipeline.json"
    code = main(
        [
            "--seconds", "1",
            "--saturate-rate", "2000",
            "--latency-rate", "500",
            "--baseline-rate", "200",
            "--protocols", "5",
            "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    results = {(r["scenario"], r["extra"]["source"]): r for r in report["results"]}
    assert set(results) == {
        ("saturate", "mqtt"),
        ("latency", "mqtt"),
        ("saturate", "stream"),
        ("latency", "stream"),
        ("baseline", "mqtt"),
    }
    for r in results.values():
        assert r["published"] > 0
        assert r["stored"] == r["published"], f"{r['scenario']}: loss or duplicates"
        assert r["duplicates_or_loss"] == 0
        assert r["worker_cpu_us_per_reading"] > 0
        assert r["p50_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert r["extra"]["mean_batch"] >= 1
        assert r["extra"]["redis_cpu_us_per_reading"] > 0
    assert results["saturate", "stream"]["extra"]["ingest_cpu_us_per_reading"] > 0
    assert results["saturate", "mqtt"]["extra"]["ingest_cpu_us_per_reading"] == 0
    assert results["baseline", "mqtt"]["extra"]["mean_batch"] == 1.0, (
        "max_batch=1 means batches of 1"
    )
    assert report["batched_vs_per_message"] > 0
    printed = capsys.readouterr().out
    assert "micro-batched / per-message" in printed
    assert str(out) in printed
