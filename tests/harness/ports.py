"""Ports for tests that start ``iotstream demo`` (tests/integration/test_demo.py,
test_wheel_install.py), which binds seven fixed ports of its own choosing."""

from __future__ import annotations

import contextlib
import random
import socket
import time
from pathlib import Path

__all__ = ["demo_ports", "port_free", "wait_ports_free"]


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could bind ``port`` now (as the demo's own check does: a socket in
    TIME_WAIT is no listener)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_ports_free(ports: dict[str, int], timeout: float = 15) -> None:
    """Wait until a server could bind every port in ``ports`` again (a stopped demo's);
    fail naming the ones still busy after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while busy := [name for name, port in ports.items() if not port_free(port)]:
        if time.monotonic() >= deadline:
            raise AssertionError(f"ports still busy {timeout:g}s after the demo stopped: {busy}")
        time.sleep(0.1)


def demo_ports() -> dict[str, int]:
    """Seven free consecutive ports for one demo (its metrics take DEMO_METRICS_PORT and the
    two after it: workers 1 and 2, the ingest), below the kernel's ephemeral range.

    There no client connection of a test running beside this one can take one as its local
    port between this choice and the demo's own check (a bind to port 0, as ``free_port()``
    does, gives a port in that range, and such a connection makes the demo refuse to start:
    CI, 2026-11-30)."""
    low = _ephemeral_low()
    first, last = max(1024, low - 12_000), low - 7
    if last - first < 1_000:  # an unusual range with no room below it: anywhere, then
        first, last = 1024, 65_528
    rng = random.Random()
    while True:
        base = rng.randrange(first, last)
        if all(port_free(port) for port in range(base, base + 7)):
            names = ("DEMO_HTTP_PORT", "DEMO_MQTT_PORT", "DEMO_MQTT_WS_PORT", "DEMO_REDIS_PORT")
            return {**{n: base + i for i, n in enumerate(names)}, "DEMO_METRICS_PORT": base + 4}


def _ephemeral_low() -> int:
    """The lowest port the kernel hands out for client connections (Linux's default range
    starts at 32768)."""
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    return 32768
