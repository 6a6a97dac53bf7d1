"""The worker's small HTTP endpoint: ``/metrics`` (Prometheus), ``/healthz``, ``/readyz``.

``/healthz`` (liveness) only says the run loop is turning: it never looks at the broker or
Redis, so an outage elsewhere does not get workers restarted. ``/readyz`` says the worker
is subscribed and its last Redis write worked.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["HealthServer", "fresh", "readiness"]


class HealthServer:
    """Serves the three endpoints on ``port`` from a daemon thread (context manager).

    Args:
        port: TCP port (0 picks a free one; see :attr:`port`).
        registry: the metrics to expose.
        alive: returns whether the run loop turned recently.
        ready: returns ``(ready, reason)``.
        host: bind address.
    """

    def __init__(
        self,
        port: int,
        registry: CollectorRegistry,
        alive: Callable[[], bool],
        ready: Callable[[], tuple[bool, str]],
        host: str = "0.0.0.0",  # noqa: S104 - probes and scrapers come from outside the pod
    ) -> None:
        handler = _handler(registry, alive, ready)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(
    registry: CollectorRegistry,
    alive: Callable[[], bool],
    ready: Callable[[], tuple[bool, str]],
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                ok = alive()
                self._send(200 if ok else 503, b"ok\n" if ok else b"run loop stalled\n")
            elif path == "/readyz":
                ok, reason = ready()
                self._send(200 if ok else 503, (reason + "\n").encode())
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n")

        def _send(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Probes every few seconds would drown the log."""

    return Handler


def readiness(source_ready: bool, store_ok: bool) -> tuple[bool, str]:
    """``/readyz`` of a worker or an ingest: its source delivers and its last write worked."""
    if not source_ready:
        return False, "not connected to the broker"
    if not store_ok:
        return False, "redis writes failing"
    return True, "ready"


def fresh(last: Callable[[], float], max_age: float) -> Callable[[], bool]:
    """A liveness check: ``last()`` (a monotonic time) is at most ``max_age`` seconds old."""
    return lambda: time.monotonic() - last() <= max_age
