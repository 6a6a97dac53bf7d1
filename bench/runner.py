"""``iotstream bench all``: every scenario, repeated, each run's JSON in one folder.

Runs models, pipeline, batching, swap, oip, gateway, e2e and rest in that order, each
``--repeat`` times (default 3: shared machines are noisy, the report gives the median and
the spread), and writes ``<scenario>-<k>.json`` under ``--results`` (default
``bench/results/all-<UTC time>/``). Every file gets the scenario's name, the run number,
its arguments and this machine's description (CPU model, ISA flags, cores, versions),
whatever the scenario wrote itself. A ``summary.json`` lists the runs, their durations,
their headline figures and their loss counts; then ``iotstream bench report DIR`` makes
the page.

``--quick`` runs bounded forms for CI (about 1.5 minutes in all) and checks only that each
scenario ran, produced non-zero figures and lost nothing; never a speed threshold.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

from bench.cli import scenario_parser
from bench.figures import figures, lost
from bench.machine import machine_info

__all__ = ["FULL", "QUICK", "aggregate", "main", "quick_problems"]

ROOT = Path(__file__).resolve().parent.parent

FULL: dict[str, list[str]] = {
    "models": ["--batches", "1", "64", "256", "--threads", "1", "--min-time", "0.3"],
    "pipeline": ["--seconds", "8", "--sources", "mqtt"],
    "batching": ["--rates", "2000,10000,30000", "--seconds", "5"],
    "swap": ["--quick", "--rate", "5000"],
    "oip": ["--seconds", "5"],
    "gateway": [],
    "e2e": [],
    "rest": [],
}
"""Arguments of each scenario in a full run (bounded so that 3 repeats take ~30 min)."""

QUICK: dict[str, list[str]] = {
    "models": ["fault-clf", "--batches", "1", "64", "--threads", "1", "--min-time", "0.02"],
    "pipeline": [
        "--seconds", "1", "--saturate-rate", "2000", "--latency-rate", "500",
        "--baseline-rate", "200", "--protocols", "5", "--sources", "mqtt",
    ],
    "batching": ["--rates", "500", "--seconds", "1"],
    "swap": ["--seconds", "3", "--rate", "500", "--every", "1", "--model", "fault-clf"],
    "oip": ["--clients", "8", "--seconds", "1"],
    "gateway": ["--seconds", "1", "--only", "throughput", "--quick"],
    "e2e": ["--quick", "--rates", "1000"],
    "rest": ["--quick"],
}  # fmt: skip
"""Bounded arguments for ``--quick`` (CI: seconds per scenario, not a measurement)."""


def _models_main(argv: list[str]) -> int:
    """``iotstream models bench`` writing its JSON to ``--out`` (a file, like the others)."""
    from training.bench import BenchConfig, run_bench

    parser = argparse.ArgumentParser(prog="models bench")
    parser.add_argument("names", nargs="*")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64, 256])
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--min-time", type=float, default=0.3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    cfg = BenchConfig(
        batches=tuple(args.batches),
        threads=tuple(args.threads),
        min_time_s=args.min_time,
        names=tuple(args.names) or None,
    )
    report = run_bench(ROOT / "models", cfg)
    args.out.write_text(json.dumps(report, indent=2))
    return 0


def run_one(name: str, argv: list[str], out: Path) -> int:
    """Run scenario ``name`` once with ``argv``, its JSON at ``out``."""
    if name == "models":
        return _models_main([*argv, "--out", str(out)])
    module = importlib.import_module(f"bench.{name}_bench")
    code: int = module.main([*argv, "--out", str(out)])
    return code


def _annotate(path: Path, name: str, run: int, argv: list[str], machine: dict[str, Any]) -> None:
    report = json.loads(path.read_text())
    report["benchmark"] = name
    report["run"] = run
    report["argv"] = argv
    report["machine"] = {**machine, **report.get("machine", {})}
    path.write_text(json.dumps(report, indent=1))


def quick_problems(name: str, report: dict[str, Any]) -> list[str]:
    """Why a quick run does not count as run: no figures, a zero figure, or a loss."""
    found = figures(name, report)
    problems = [f"{name}: {k} is {v}" for k, v in found.items() if v is not None and v <= 0]
    if not any(v for v in found.values()):
        problems.append(f"{name}: no figures")
    if n := lost(name, report):
        problems.append(f"{name}: {n} lost, duplicated or failed")
    return problems


def aggregate(values: list[float]) -> dict[str, float]:
    """Median and spread (min, max) of one figure over the repeats."""
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios, write the runs and the summary; in quick mode check them."""
    parser = scenario_parser("all", __doc__)
    parser.add_argument("--quick", action="store_true", help="bounded CI forms, checked")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario")
    parser.add_argument(
        "--only", default=None, help="comma-separated scenarios (default: all, in order)"
    )
    parser.add_argument("--results", type=Path, default=None, help="folder for the JSON runs")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    names = args.only.split(",") if args.only else list(plan)
    if unknown := set(names) - set(plan):
        parser.error(f"unknown scenarios: {sorted(unknown)}; have {list(plan)}")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    results = args.results or ROOT / "bench" / "results" / f"all-{stamp}"
    results.mkdir(parents=True, exist_ok=True)
    machine = machine_info()
    runs: list[dict[str, Any]] = []
    problems: list[str] = []
    for name in names:
        for k in range(1, args.repeat + 1):
            out = results / f"{name}-{k}.json"
            print(f"\n=== {name} run {k}/{args.repeat}: {' '.join(plan[name])}", flush=True)
            t0 = time.monotonic()
            code = run_one(name, plan[name], out)
            seconds = round(time.monotonic() - t0, 1)
            if code != 0 or not out.exists():
                problems.append(f"{name} run {k}: exit code {code}")
                continue
            _annotate(out, name, k, plan[name], machine)
            report = json.loads(out.read_text())
            runs.append(
                {
                    "scenario": name,
                    "run": k,
                    "file": out.name,
                    "seconds": seconds,
                    "figures": figures(name, report),
                    "lost": lost(name, report),
                }
            )
            if args.quick:
                problems += quick_problems(name, report)
    summary = {
        "machine": machine,
        "quick": args.quick,
        "repeat": args.repeat,
        "runs": runs,
        "problems": problems,
    }
    (results / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"\nruns: {results} ({len(runs)} runs)")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0
