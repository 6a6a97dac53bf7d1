"""``iotstream bench report`` from small fixture reports: the page, its plots, the targets
(met, or missed by how much), the median and spread over repeats, and the quick checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.e2e_bench import hist_percentiles
from bench.e2e_clients import HOPS
from bench.report import load_runs, main, target_rows
from bench.runner import aggregate, quick_problems


def _e2e(best: float | None, p99_at_10k: float, lost: int = 0) -> dict[str, Any]:
    def rate(offered: float, p99_ms: float) -> dict[str, Any]:
        # 99 readings at 5.0 ms, one at p99_ms: p99 = 5.0, max = p99_ms
        hist = {"50": 98, "51": 1, str(round(p99_ms * 10)): 1}
        return {
            "offered_per_s": offered,
            "delivered_per_s": offered * 0.99,
            "lost": lost,
            "duplicates": 0,
            "closed_clients": 0,
            "latency_ms": {h: hist_percentiles(hist) for h in (*HOPS, "total")}
            | {"total": {"p50": 5.0, "p95": 5.0, "p99": p99_ms, "max": p99_ms}},
            "cpu_s_per_1k": {"worker": 0.03, "gateway": 0.02},
            "hist_0_1ms": {h: hist for h in (*HOPS, "total")},
        }

    return {
        "benchmark": "e2e",
        "machine": {"cpu": "Test CPU", "cores": 2, "isa_flags": ["avx2"], "when": "2026-11-30"},
        "best_rate_per_s": best,
        "found_by": "rate list",
        "results": [rate(5000, 12.0), rate(10000, p99_at_10k)],
    }


def _rest(streaming: float) -> dict[str, Any]:
    rows = {"def": 1000.0, "async": 1500.0, "gateway": 12000.0, "streaming": streaming}
    return {
        "benchmark": "rest",
        "params": {"gateway_batch": 64},
        "ratios": {
            "streaming_over_def": streaming / 1000,
            "streaming_over_async": streaming / 1500,
            "gateway_batch_over_def": 12.0,
        },
        "results": [
            {
                "name": n,
                "readings_per_s": v,
                "server_cpu_us_per_reading": 1e6 / max(v, 1),
                "errors": 0,
            }
            for n, v in rows.items()
        ],
    }


def _write(folder: Path, name: str, report: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(report))


@pytest.fixture
def runs_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "runs"
    for k, (best, p99, streaming) in enumerate(
        [(10000.0, 25.0, 20000.0), (5000.0, 40.0, 24000.0), (10000.0, 28.0, 22000.0)], 1
    ):
        _write(folder, f"e2e-{k}.json", _e2e(best, p99))
        _write(folder, f"rest-{k}.json", _rest(streaming))
    _write(folder, "summary.json", {"runs": []})  # not a report: skipped
    return folder


def test_the_page_has_targets_spread_and_plots(runs_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "docs"
    assert main([str(runs_dir), "--out", str(out)]) == 0
    page = (out / "benchmarks.md").read_text()
    for png in ("e2e_latency_cdf.png", "e2e_rate.png", "rest_vs_streaming.png"):
        assert (out / "img" / "bench" / png).stat().st_size > 1000
        assert f"](img/bench/{png})" in page
    # e2e: median best rate 10,000 of the 12,000 target -> missed by 17 %
    assert "**missed by 17 %** (10,000 vs 12,000)" in page
    # streaming / def: median 22x -> met; streaming / async: median 14.7x -> met
    rest_rows = [line for line in page.splitlines() if line.startswith("| streaming path")]
    assert len(rest_rows) == 2 and all(line.endswith("| met |") for line in rest_rows)
    assert "| not run | - |" in page  # pipeline and gateway targets: no reports given
    assert "Test CPU, 2 cores, ISA avx2" in page
    # median and spread of a headline figure over the three runs
    assert "| streaming_readings_per_s | 22,000 | 20,000 | 24,000 | 3 |" in page


def test_a_missing_e2e_verdict_counts_as_zero(tmp_path: Path) -> None:
    _write(tmp_path, "e2e-1.json", _e2e(None, 50.0))
    rows = target_rows(load_runs([tmp_path]))
    assert any("**missed by 100 %** (0 vs 12,000)" in row for row in rows)


def test_runs_are_recognised_by_file_name_when_unnamed(tmp_path: Path) -> None:
    report = _rest(9000.0)
    del report["benchmark"]
    _write(tmp_path, "rest.json", report)
    _write(tmp_path, "notes.json", {"hello": 1})
    assert list(load_runs([tmp_path])) == ["rest"]


def test_aggregate_gives_median_and_spread() -> None:
    assert aggregate([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}


def test_histogram_percentiles() -> None:
    hist = {"10": 50, "20": 49, "300": 1}  # 0.1 ms buckets
    assert hist_percentiles(hist) == {"p50": 1.0, "p95": 2.0, "p99": 2.0, "max": 30.0}


def test_quick_checks_catch_loss_and_zero_figures_but_not_slowness() -> None:
    assert quick_problems("e2e", _e2e(None, 900.0)) == []  # slow is fine in CI
    assert quick_problems("e2e", _e2e(5000.0, 10.0, lost=3)) == [
        "e2e: 6 lost, duplicated or failed"
    ]
    zero = _rest(0.0)
    assert "rest: streaming_readings_per_s is 0.0" in quick_problems("rest", zero)
