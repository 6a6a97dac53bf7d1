"""Model benchmark: fp32 vs every int8 variant on this machine (size, rows/s, latency).

The same as ``iotstream models bench``; kept here beside the other benchmarks. Run it alone:

    flock /tmp/iotstream-heavy.lock .venv/bin/python bench/models_bench.py [--threads 1 2] ...

Writes ``bench/results/models_bench.json`` and ``models_bench.md`` (git-ignored).
"""

from __future__ import annotations

import sys

from iotstream.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["models", "bench", *sys.argv[1:]]))
