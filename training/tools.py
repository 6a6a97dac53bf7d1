"""Running the external programs the pipeline needs (airflow, qemu): one way to run them
and one shape of error when they fail."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

__all__ = ["run_tool"]

STDERR_TAIL = 1500
"""Characters of a failed program's stderr kept in the error (its last ones)."""


def run_tool(
    argv: Sequence[str], what: str, *, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (a fixed program and arguments of ours, never through a shell) with
    its output captured as text, and return it.

    Raises:
        RuntimeError: it exited non-zero: ``"<what> failed (<exit code>): <stderr tail>"``.
        subprocess.TimeoutExpired: it ran longer than ``timeout`` seconds (it is killed).
    """
    proc = subprocess.run(  # noqa: S603
        list(argv), capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr[-STDERR_TAIL:]}")
    return proc
