"""Shared checks for the deployment files: service environments against the settings classes,
and the offline tools (hadolint, check-jsonschema, kubectl) installed by the test extra."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from device_sim.settings import SimSettings
from gateway.settings import GatewaySettings
from inference_worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS: dict[str, type[BaseSettings]] = {
    "WORKER_": WorkerSettings,
    "GATEWAY_": GatewaySettings,
    "SIM_": SimSettings,
}
"""Environment prefix -> the settings class that reads it."""
COMMAND_PREFIX = {"worker": "WORKER_", "ingest": "WORKER_", "gateway": "GATEWAY_", "sim": "SIM_"}
"""``iotstream`` subcommand -> the prefix of the settings it reads."""


def tool(name: str) -> str:
    """A console script of the test extra (installed beside this interpreter)."""
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is missing: install the test extra (scripts/bootstrap)"
    return str(path)


def run_tool(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a tool; the caller checks the return code and output."""
    return subprocess.run(
        [tool(argv[0]), *argv[1:]], cwd=cwd, capture_output=True, text=True, check=False
    )


def env_problems(command: str, env: dict[str, str]) -> list[str]:
    """Variables in ``env`` that ``iotstream <command>`` does not read (wrong service's prefix,
    or no such field in its settings class)."""
    prefix = COMMAND_PREFIX[command]
    fields = set(SETTINGS[prefix].model_fields)
    problems = []
    for key in env:
        other = [p for p in SETTINGS if key.startswith(p) and p != prefix]
        if other:
            problems.append(f"{key}: {command} does not read {other[0]}* variables")
        elif key.startswith(prefix) and key.removeprefix(prefix).lower() not in fields:
            problems.append(f"{key}: no field {key.removeprefix(prefix).lower()!r} in settings")
    return problems


def build_settings(command: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The settings ``iotstream <command>`` would build from exactly ``env`` (raises the
    settings class's validation error when something required is missing or invalid)."""
    for key in list(os.environ):
        if any(key.startswith(p) for p in SETTINGS):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return SETTINGS[COMMAND_PREFIX[command]]()
