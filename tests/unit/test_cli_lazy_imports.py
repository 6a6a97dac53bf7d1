"""The worker image has no FastAPI, uvicorn, cryptography, gRPC or PyJWT (docs/deploy.md,
"Image size per role"): the CLI must import a service's package only when that service's
command runs. Each case runs ``iotstream`` in a fresh interpreter with those packages made
unimportable by a meta-path blocker, as they are in the worker image."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Not in the worker image's package set (compose/Dockerfile, stage worker-site).
BLOCKED = ("fastapi", "starlette", "uvicorn", "cryptography", "jwt", "grpc", "grpc_health")

_WRAPPER = """
import importlib.abc, sys
BLOCKED = frozenset({blocked!r})
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"blocked: {{name}} (not in the worker image)", name=name)
        return None
sys.meta_path.insert(0, Blocker())
from iotstream.cli import main
code = main(sys.argv[1:])
leaked = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
assert not leaked, leaked
raise SystemExit(code)
"""


def _run_blocked(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _WRAPPER.format(blocked=BLOCKED), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("command", "option"),
    [
        ("worker", "--model-store"),
        ("ingest", "--worker-id"),
        ("sim", "--devices"),
        ("models", "publish"),
    ],
)
def test_worker_image_commands_need_no_gateway_packages(command: str, option: str) -> None:
    result = _run_blocked(command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: iotstream {command}" in result.stdout
    assert option in result.stdout  # the options were built (from the settings class)


def test_top_level_help_lists_every_command_without_importing_them() -> None:
    result = _run_blocked("--help")
    assert result.returncode == 0, result.stderr
    for command in ("worker", "ingest", "sim", "gateway", "models", "broker", "demo"):
        assert f"\n    {command} " in result.stdout, command


def test_blocker_is_real_gateway_still_needs_fastapi() -> None:
    """The same wrapper does stop the gateway: the cases above prove laziness, not luck."""
    result = _run_blocked("gateway", "--help")
    assert result.returncode != 0
    assert "blocked: fastapi" in result.stderr
