"""``iotstream bench all --quick`` then ``iotstream bench report``: the new scenarios (e2e,
rest) and the models bench run for real, every run is checked by the runner (ran, non-zero
figures, nothing lost; never a speed threshold) and the page and its plots are written.

The quick forms of pipeline, batching, swap and oip have their own tests
(tests/integration/test_bench_*.py); this one does not run them again (CI time).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iotstream", "bench", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_quick_runs_and_the_report_from_them(tmp_path: Path) -> None:
    results, docs = tmp_path / "runs", tmp_path / "docs"
    run = _cli(
        "all", "--quick", "--repeat", "1", "--only", "models,e2e,rest",
        "--results", str(results), timeout=80,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads((results / "summary.json").read_text())
    assert summary["problems"] == []
    assert [r["scenario"] for r in summary["runs"]] == ["models", "e2e", "rest"]
    e2e = json.loads((results / "e2e-1.json").read_text())
    assert e2e["machine"]["cores"] and e2e["machine"]["onnxruntime"]
    for rate in e2e["results"]:
        assert rate["published"] > 0 and rate["lost"] == 0 and rate["duplicates"] == 0
        total = rate["latency_ms"]["total"]
        assert 0 < total["p50"] <= total["p99"] <= total["max"]
        assert all(v > 0 for v in rate["cpu_s_per_1k"].values()), rate["cpu_s_per_1k"]
    rest = {r["name"]: r for r in json.loads((results / "rest-1.json").read_text())["results"]}
    assert set(rest) == {"def", "async", "gateway", "streaming"}
    assert all(r["readings_per_s"] > 0 and r["errors"] == 0 for r in rest.values())

    report = _cli("report", str(results), "--out", str(docs), timeout=60)
    assert report.returncode == 0, report.stdout + report.stderr
    page = (docs / "benchmarks.md").read_text()
    assert "## Targets (issue #15)" in page
    for png in (
        "e2e_latency_cdf.png",
        "e2e_rate.png",
        "rest_vs_streaming.png",
        "models_fp32_int8.png",
    ):
        assert (docs / "img" / "bench" / png).stat().st_size > 1000, png
        assert f"img/bench/{png}" in page
