"""Service processes for end-to-end tests (the real CLI, so ``kill -9`` is a real crash)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[2]


class CliProcess:
    """``python -m iotstream <args>`` with extra environment, logging to a file.

    ``ready_line`` is a log substring that means the process is ready.
    """

    def __init__(self, args: list[str], env: dict[str, str], log: Path, ready_line: str) -> None:
        self.args = args
        self.env = env
        self.log = log
        self.ready_line = ready_line
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> Self:
        """Start and wait for the ready line; raise with the log tail if it never comes."""
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "iotstream", *self.args],
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log.read_bytes()[offset:].decode(errors="replace")
            if self.ready_line in text:
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.args[0]} not ready:\n{self.tail()}")

    def tail(self, chars: int = 4000) -> str:
        """The end of the log."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def terminate(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.terminate()


def setup_script(name: str, hint: str = "") -> subprocess.CompletedProcess[str]:
    """Run ``scripts/<name>`` (an idempotent installer such as ``arm64-sysroot`` or
    ``airflow-env``) and return its result; fail the test with its stderr (and ``hint``)
    when it fails."""
    import pytest

    proc = subprocess.run(
        [str(ROOT / "scripts" / name)], capture_output=True, text=True, timeout=900, check=False
    )
    if proc.returncode != 0:
        pytest.fail(f"scripts/{name} failed:\n{proc.stderr[-2000:]}\n{hint}", pytrace=False)
    return proc
