"""``iotstream bench``: run a benchmark from the source tree (figures + a JSON report)."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

__all__ = ["register"]

_BENCHES = {
    "pipeline": ("bench.pipeline_bench", "simulator -> Mosquitto -> worker -> Redis"),
    "gateway": ("bench.gateway_bench", "Redis -> gateway -> WebSocket clients"),
    "oip": ("bench.oip_bench", "gRPC V2 clients: dynamic batching on vs off"),
    "swap": ("bench.swap_bench", "latency and loss while the model alias moves"),
    "batching": ("bench.batching_bench", "fixed vs adaptive batch-cut policy per offered rate"),
    "batch-cost": (
        "bench.batch_cost",
        "CPU one micro-batch costs (score, store), warm vs after a sleep",
    ),
    "e2e": ("bench.e2e_bench", "device -> ... -> WebSocket clients: per-hop latency, loss, CPU"),
    "rest": ("bench.rest_bench", "course-style FastAPI /predict vs /v1/predict vs streaming"),
    "all": ("bench.runner", "every scenario, repeated (--repeat 3, --quick for CI)"),
    "report": ("bench.report", "JSON runs -> markdown page with plots (--out DIR)"),
    "capture": ("bench.capture_bench", "capture hot-path cost; saturate with capture off vs on"),
}


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``bench NAME [ARGS...]``."""
    parser = subparsers.add_parser(
        "bench",
        help="run a benchmark (prints figures, writes bench/results/<name>.json)",
        description="Run one of the benchmarks in bench/. Arguments after the name go to it "
        "(try 'iotstream bench pipeline --help'). Run on a quiet machine: they measure CPU. "
        "'all' runs every scenario into bench/results/all-<time>/, 'report' makes the page.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="benchmarks:\n"
        + "\n".join(f"  {name:<9} {text}" for name, (_m, text) in _BENCHES.items())
        + "\n  (models: see 'iotstream models bench')",
    )
    parser.add_argument("name", choices=sorted(_BENCHES), help="which benchmark")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its own options")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    module_name = _BENCHES[args.name][0]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        print(
            f"iotstream bench: {module_name} is not importable; run from a source checkout "
            "(the benchmarks are not part of the installed package)",
            file=sys.stderr,
        )
        return 2
    code: int = module.main(args.args)
    return code
