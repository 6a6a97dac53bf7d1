"""Client side of the end-to-end benchmark: one process, one WebSocket subscribed to everything.

    python -m bench.e2e_clients WS_URL        (token in $BENCH_TOKEN)

Prints ``ready`` once subscribed. On stdin, ``count`` prints the number of items received
so far (the bench waits until every client has everything); ``stop`` prints one JSON line:
items, unique ``(device, seq)`` pairs, duplicates, holes inside each device's run, frames,
whether the connection closed, and per-hop latency histograms (0.1 ms buckets) built from
the prediction's ``hops``, the frame's ``sent_ts`` and this process's receive time.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any, Final

import orjson
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from bench.client_processes import subscribe_all

__all__ = ["CLIENT_MODULE", "HOPS"]

CLIENT_MODULE: Final = "bench.e2e_clients"
HOPS: Final = ("device_worker", "batch_infer", "worker_redis", "redis_gateway", "gateway_client")
"""Hop names, in path order: device -> worker received -> inferred -> written to Redis ->
sent by the gateway -> received by the client. ``total`` is device -> client."""


class Tally:
    """What one client saw."""

    def __init__(self) -> None:
        self.items = 0
        self.frames = 0
        self.closed = False
        self.seen: dict[str, set[int]] = {}
        self.hist: dict[str, dict[int, int]] = {name: {} for name in (*HOPS, "total")}

    def frame(self, data: bytes, now: float) -> None:
        """Count one ``predictions`` frame received at ``now``."""
        msg = orjson.loads(data)
        if msg.get("type") != "predictions":
            return
        sent = msg["sent_ts"]
        self.frames += 1
        hist = self.hist
        for item in msg["items"]:
            self.items += 1
            self.seen.setdefault(item["device_id"], set()).add(item["seq"])
            h = item["hops"]
            stamps = (h["device_ts"], h["received_ts"], h["inferred_ts"], h["published_ts"], sent)
            for name, a, b in zip(HOPS, stamps, (*stamps[1:], now), strict=True):
                bucket = hist[name]
                key = round((b - a) * 1e4)
                bucket[key] = bucket.get(key, 0) + 1
            total = hist["total"]
            key = round((now - stamps[0]) * 1e4)
            total[key] = total.get(key, 0) + 1

    def report(self) -> dict[str, Any]:
        """The JSON line printed on ``stop``."""
        unique = sum(len(s) for s in self.seen.values())
        holes = sum(max(s) + 1 - min(s) - len(s) for s in self.seen.values() if s)
        return {
            "items": self.items,
            "unique": unique,
            "duplicates": self.items - unique,
            "holes": holes,
            "devices": len(self.seen),
            "frames": self.frames,
            "closed": self.closed,
            "hist_0_1ms": {k: {str(b): n for b, n in v.items()} for k, v in self.hist.items()},
        }


async def _reader(ws: ClientConnection, tally: Tally) -> None:
    try:
        while True:
            data = await ws.recv(decode=False)
            tally.frame(data, time.time())
    except ConnectionClosed:
        tally.closed = True


async def _main(url: str) -> None:
    tally = Tally()
    ws = await subscribe_all(url)
    task = asyncio.create_task(_reader(ws, tally))
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
        if line == "count":
            print(json.dumps({"items": tally.items}), flush=True)
        else:  # "stop" or end of input
            task.cancel()
            print(json.dumps(tally.report()), flush=True)
            break
    await ws.close()


if __name__ == "__main__":
    asyncio.run(_main(sys.argv[1]))
