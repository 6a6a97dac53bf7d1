"""HTTP load generator for ``iotstream bench rest``: one process, many keep-alive connections.

    python -m bench.http_load HOST PORT CONNECTIONS SECONDS REQUESTS_FILE

``REQUESTS_FILE`` holds complete HTTP/1.1 requests (bytes), one per line as JSON strings
(latin-1); each connection sends them in turn, one at a time, waiting for each response
(closed loop: concurrency = connections). Prints ``ready`` once connected; ``start`` on
stdin runs the load for SECONDS and prints one JSON line: ok, errors (non-2xx or broken
connections), seconds, and the per-request latency p50/p99 in ms.

Written on raw asyncio streams (no HTTP library): about 15-20 µs of CPU per request, so two
of these drive a Python server to its limit without taking most of the CPU themselves.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["build_request"]


def build_request(host: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    """A keep-alive ``POST`` with a JSON body."""
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _Stats:
    def __init__(self) -> None:
        self.ok = 0
        self.errors = 0
        self.latencies: list[float] = []


async def _connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    requests: list[bytes],
    offset: int,
    stop_at: float,
    stats: _Stats,
) -> None:
    i = offset
    while (t0 := time.perf_counter()) < stop_at:
        writer.write(requests[i % len(requests)])
        i += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
        except (asyncio.IncompleteReadError, ConnectionError):
            stats.errors += 1
            return
        if head[9:10] == b"2":
            stats.ok += 1
            stats.latencies.append(time.perf_counter() - t0)
        else:
            stats.errors += 1


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 3)


async def _main(
    host: str, port: int, connections: int, seconds: float, requests: list[bytes]
) -> None:
    conns = [await asyncio.open_connection(host, port) for _ in range(connections)]
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    stats = _Stats()
    t0 = time.perf_counter()
    await asyncio.gather(
        *(_connection(r, w, requests, k * 7, t0 + seconds, stats) for k, (r, w) in enumerate(conns))
    )
    elapsed = time.perf_counter() - t0
    report: dict[str, Any] = {
        "ok": stats.ok,
        "errors": stats.errors,
        "seconds": round(elapsed, 3),
        "p50_ms": _pct(stats.latencies, 0.50),
        "p99_ms": _pct(stats.latencies, 0.99),
    }
    print(json.dumps(report), flush=True)
    for _r, w in conns:
        w.close()


if __name__ == "__main__":
    host, port, n, secs, file = sys.argv[1:6]
    lines = Path(file).read_text().splitlines()
    asyncio.run(
        _main(
            host, int(port), int(n), float(secs), [json.loads(x).encode("latin-1") for x in lines]
        )
    )
