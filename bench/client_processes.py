"""What the gateway and e2e benchmarks share about their WebSocket client processes: the
parent's side (child processes driven by one-line commands, each answering one line) and the
child's (a subscriber connection with the bench token)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

__all__ = ["LineProcesses", "subscribe_all"]

ROOT = Path(__file__).resolve().parent.parent


class LineProcesses:
    """``python -m <module> <args>`` child processes (one per argument list), driven over
    stdin/stdout: the parent writes a command line to each, each answers one line. Every child
    first prints ``ready``. The bench token travels in ``BENCH_TOKEN``."""

    def __init__(self, module: str, argvs: list[list[str]], token: str) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-m", module, *argv],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
                env={**os.environ, "BENCH_TOKEN": token},
            )
            for argv in argvs
        ]

    def ask(self, command: str | None) -> list[str]:
        """Send ``command`` to every child (``None``: send nothing) and read one line each."""
        if command:
            for p in self.procs:
                assert p.stdin is not None
                p.stdin.write(command + "\n")
                p.stdin.flush()
        lines = []
        for p in self.procs:
            assert p.stdout is not None
            lines.append(p.stdout.readline().strip())
        return lines

    def ready(self) -> None:
        """Wait until every child has said ``ready``."""
        lines = self.ask(None)
        if any(line != "ready" for line in lines):
            raise RuntimeError(f"WebSocket client processes failed to start: {lines}")

    @property
    def pids(self) -> list[int]:
        """The child processes."""
        return [p.pid for p in self.procs]

    def close(self) -> None:
        """Close every child's stdin (they exit), then wait; kill what does not end in 10 s."""
        for p in self.procs:
            if p.stdin:
                p.stdin.close()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


async def subscribe_all(url: str) -> ClientConnection:
    """In a child: connect with ``BENCH_TOKEN``, subscribe to everything, and return once
    the gateway has answered the subscription."""
    ws = await connect(
        url,
        subprotocols=[Subprotocol("bearer"), Subprotocol(os.environ["BENCH_TOKEN"])],
        compression=None,
        max_size=None,
        open_timeout=30,
        ping_interval=None,
    )
    await ws.send('{"type":"subscribe"}')
    await ws.recv()
    return ws
