"""What a benchmark ran on: CPU model, ISA flags, cores, load and the versions that matter.

Every report written by ``iotstream bench all`` carries this as ``machine`` (the runner
merges it into the scenarios that write a shorter one), so figures from different machines
are never compared blind.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from iotstream.localservices import find_binary

__all__ = ["ISA_FLAGS", "machine_info"]

ISA_FLAGS = frozenset(
    {
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "avx512f",
        "avx512bw",
        "avx512_vnni",
        "avx_vnni",
        "amx_int8",
        "asimd",
        "asimddp",
        "sve",
        "i8mm",
    }
)
"""The flags that decide ONNX Runtime's kernels (int8 and fp32 paths) on x86 and arm."""


def _cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = "", frozenset[str]()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "cpu model") and not model:
                model = value.strip()
            elif key in ("flags", "features") and not flags:
                flags = frozenset(value.split())
    return model or platform.processor() or platform.machine(), flags


def _binary_version(name: str, flag: str) -> str | None:
    binary = find_binary(name)
    if binary is None:
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run([binary, flag], capture_output=True, text=True, timeout=5)
        words = (out.stdout or out.stderr).split()
        for word in words:
            if word[:1].isdigit() or word.startswith("v="):
                return word.removeprefix("v=")
    return None


def _package(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """This machine and the software versions a reader needs to compare two reports."""
    model, flags = _cpuinfo()
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": model,
        "isa_flags": sorted(ISA_FLAGS & flags),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "kernel": platform.release(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "onnxruntime": _package("onnxruntime"),
        "numpy": _package("numpy"),
        "redis_py": _package("redis"),
        "fastapi": _package("fastapi"),
        "uvicorn": _package("uvicorn"),
        "redis_server": _binary_version("redis-server", "--version"),
        "mosquitto": _binary_version("mosquitto", "-h"),
    }
