"""Client side of the gateway benchmark: one process holding many WebSocket connections.

    python -m bench.gateway_clients WS_URL N MODE     (token in $BENCH_TOKEN)

Prints ``ready`` once every connection is subscribed; then on stdin ``start`` begins
counting and ``stop`` prints a JSON line: items, frames, closed connections and (MODE
``latency``) a histogram of published -> received latency in 0.1 ms buckets. Throughput
mode counts items without decoding JSON (``"device_id"`` occurrences in the raw frame) and
latency mode only extracts ``published_ts`` with a regular expression, so the clients spend
as little CPU as possible next to the gateway on this 2-core machine.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from typing import Final

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bench.client_processes import subscribe_all

__all__ = ["CLIENT_MODULE"]

CLIENT_MODULE: Final = "bench.gateway_clients"
_ITEM: Final = b'"device_id"'
_PUBLISHED: Final = re.compile(rb'"published_ts":([0-9.eE+-]+)')


class Counter:
    """Shared counters of one process."""

    def __init__(self, latency: bool) -> None:
        self.latency = latency
        self.measuring = False
        self.items = 0
        self.frames = 0
        self.closed = 0
        self.hist: dict[str, int] = {}


async def _reader(ws: ClientConnection, counter: Counter) -> None:
    try:
        while True:
            data = await ws.recv(decode=False)
            if not counter.measuring:
                continue
            if counter.latency:
                now = time.time()
                stamps = _PUBLISHED.findall(data)  # C speed: keep client CPU off the gateway's
                if stamps:
                    counter.frames += 1
                    counter.items += len(stamps)
                for stamp in stamps:
                    key = f"{round((now - float(stamp)) * 1e4) / 10:.1f}"
                    counter.hist[key] = counter.hist.get(key, 0) + 1
            else:
                n = data.count(_ITEM)
                if n:
                    counter.frames += 1
                    counter.items += n
    except ConnectionClosed:
        counter.closed += 1


async def _main(url: str, n: int, mode: str) -> None:
    counter = Counter(latency=mode == "latency")
    conns: list[ClientConnection] = [await subscribe_all(url) for _ in range(n)]
    tasks = [asyncio.create_task(_reader(ws, counter)) for ws in conns]
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    t0 = 0.0
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if line.strip() == "start":
            counter.measuring, t0 = True, time.perf_counter()
            print("started", flush=True)
        elif line.strip() == "stop" or not line:
            counter.measuring = False
            report = {
                "items": counter.items,
                "frames": counter.frames,
                "closed": counter.closed,
                "seconds": time.perf_counter() - t0,
                "latency_hist": counter.hist,
            }
            print(json.dumps(report), flush=True)
            break
    for task in tasks:
        task.cancel()
    await asyncio.gather(*(ws.close() for ws in conns), return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1], int(sys.argv[2]), sys.argv[3]))
