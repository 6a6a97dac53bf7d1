"""Many real WebSocket clients against a real gateway process fed through real Redis."""

from __future__ import annotations

import fnmatch
import random
import socket
import time
from typing import Any

import anyio
import pytest

from iot_contract import CloseCode, Prediction
from tests.component.gateway.support import Feeder, prediction
from tests.integration.gateway.conftest import (
    Received,
    collect,
    open_client,
    subscribe,
    until_closed,
)

pytestmark = pytest.mark.integration

DEVICES = [f"pump-{n}" for n in range(6)] + [f"fan-{n}" for n in range(4)]


def fleet_batch(start: int, n: int) -> list[Prediction]:
    """``n`` predictions round-robin over the fleet; every 7th is an anomaly, every 5th m2."""
    return [
        prediction(
            DEVICES[i % len(DEVICES)],
            i,
            anomaly=i % 7 == 0,
            model="m2" if i % 5 == 0 else "m1",
        )
        for i in range(start, start + n)
    ]


def expected(preds: list[Prediction], sub: dict[str, Any]) -> list[tuple[str, int]]:
    out = []
    for p in preds:
        if not any(fnmatch.fnmatchcase(p.device_id, g) for g in sub.get("devices", ["*"])):
            continue
        if sub.get("models") and p.model.name not in sub["models"]:
            continue
        if sub.get("anomalies_only") and not p.anomaly:
            continue
        out.append((p.device_id, p.seq))
    return out


SUBSCRIPTIONS: list[dict[str, Any]] = [
    {},
    {"devices": ["pump-*"]},
    {"devices": ["fan-1", "pump-2"]},
    {"models": ["m2"]},
    {"anomalies_only": True},
    {"devices": ["fan-?"], "models": ["m1"], "anomalies_only": True},
    {"devices": ["nobody"]},
]


def test_concurrent_clients_get_exactly_their_filter_in_order_once(
    start_gateway: Any, feeder: Feeder
) -> None:
    gw = start_gateway(batch_window_ms=2)
    subs = [SUBSCRIPTIONS[i % len(SUBSCRIPTIONS)] for i in range(42)]
    preds = fleet_batch(0, 600)
    wanted = [expected(preds, s) for s in subs]
    results = [Received() for _ in subs]

    async def client(i: int, ready: anyio.Event, go: anyio.Event, done: list[int]) -> None:
        async with await open_client(gw.ws_url) as ws:
            await subscribe(ws, results[i], **subs[i])
            done.append(i)
            if len(done) == len(subs):
                ready.set()
            await go.wait()
            await collect(ws, results[i], len(wanted[i]), within=30)
            # nothing more may arrive: a ping's heartbeat comes next, no extra predictions
            await ws.send('{"type":"ping"}')
            while results[i].record(await ws.recv())["type"] != "heartbeat":
                pass

    async def main() -> None:
        ready, go = anyio.Event(), anyio.Event()
        done: list[int] = []
        async with anyio.create_task_group() as tg:
            for i in range(len(subs)):
                tg.start_soon(client, i, ready, go, done)
            with anyio.fail_after(30):
                await ready.wait()
            go.set()
            for start in range(0, len(preds), 50):  # several XADD batches, several frames
                await anyio.to_thread.run_sync(feeder.write, preds[start : start + 50])
                await anyio.sleep(0.005)

    anyio.run(main)
    for i, got in enumerate(results):
        assert got.keys == wanted[i], f"client {i} with {subs[i]}"
    assert results[0].last_id == feeder.ids()[-1]


def test_reconnect_with_since_gets_exactly_the_gap(start_gateway: Any, feeder: Feeder) -> None:
    gw = start_gateway()

    async def main() -> None:
        first = Received()
        async with await open_client(gw.ws_url) as ws:
            sub = await subscribe(ws, first)
            feeder.write(fleet_batch(0, 40))
            await collect(ws, first, 40, within=10)
        feeder.write(fleet_batch(40, 25))  # written while the client is away
        second = Received()
        async with await open_client(gw.ws_url) as ws:
            again = await subscribe(ws, second, since=first.last_id, epoch=sub["epoch"])
            assert again["recovered"] is True
            await collect(ws, second, 25, within=10)
            feeder.write(fleet_batch(65, 5))
            await collect(ws, second, 30, within=10)
        assert [s for _, s in first.keys] == list(range(40))
        assert [s for _, s in second.keys] == list(range(40, 70))

    anyio.run(main)


def test_trimmed_since_gets_recovered_false_and_latest_state(
    start_gateway: Any, redis_service: Any, redis_keys: Any
) -> None:
    small = Feeder(redis_service.url, redis_keys, maxlen=100)  # workers trim with MAXLEN ~
    try:
        small.write(fleet_batch(0, 10))
        old_id = small.ids()[0]
        for start in range(10, 1510, 100):
            small.write(fleet_batch(start, 100))  # up to seq 1509
        assert small.ids()[0] != old_id  # it was trimmed
        gw = start_gateway()

        async def main() -> None:
            got = Received()
            async with await open_client(gw.ws_url) as ws:
                sub = await subscribe(ws, got, since=old_id, epoch=small.epoch)
                assert sub["recovered"] is False
                snapshot = got.record(await ws.recv())
                assert snapshot["type"] == "predictions" and snapshot["snapshot"] is True
                latest = {p["device_id"]: p["seq"] for p in snapshot["items"]}
                assert latest == {DEVICES[i % 10]: i for i in range(1500, 1510)}
                small.write(fleet_batch(1510, 3))
                await collect(ws, got, 13, within=10)
                assert [s for _, s in got.keys[10:]] == [1510, 1511, 1512]

        anyio.run(main)
    finally:
        small.close()


def test_stuck_client_is_closed_slow_while_others_stay_fast(
    start_gateway: Any, feeder: Feeder
) -> None:
    gw = start_gateway(client_queue_items=200, batch_window_ms=2, close_timeout_s=30)
    n_fast = 5

    async def main() -> None:
        # A small receive buffer (no autotuning) and max_queue=1: once a few frames are
        # buffered, TCP backpressure reaches the gateway, as with a frozen browser tab.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.connect((gw.host, gw.port))  # loopback: immediate
        sock.setblocking(False)
        stuck = await open_client(gw.ws_url, max_queue=1, sock=sock)
        await subscribe(stuck, Received())
        fast = [Received() for _ in range(n_fast)]
        total = 0

        async def reader(i: int) -> None:
            async with await open_client(gw.ws_url) as ws:
                await subscribe(ws, fast[i])
                await collect(ws, fast[i], total_expected, within=60)

        total_expected = 2010  # 67 batches of 30
        rng = random.Random(7)  # ~4 KB per prediction: 8 MB, more than the socket buffers
        payload = [rng.random() for _ in range(200)]
        async with anyio.create_task_group() as tg:
            for i in range(n_fast):
                tg.start_soon(reader, i)
            await anyio.sleep(0.5)
            while total < total_expected:
                batch = [
                    p.model_copy(update={"values": payload, "truth": str(time.time())})
                    for p in fleet_batch(total, 30)
                ]
                await anyio.to_thread.run_sync(feeder.write, batch)
                total += 30
                await anyio.sleep(0.01)
        # the stuck client now reads: what was buffered, then the slow-consumer close
        closed = await until_closed(stuck, within=30)
        assert closed.rcvd is not None and closed.rcvd.code == CloseCode.SLOW_CONSUMER
        for got in fast:
            assert [s for _, s in got.keys] == list(range(total_expected))
            lat = sorted(
                a - float(p["truth"]) for a, p in zip(got.arrivals, got.items, strict=True)
            )
            p99 = lat[int(len(lat) * 0.99)]
            assert p99 < 0.5, f"p99 {p99 * 1000:.0f} ms while a client was stuck"

    anyio.run(main)


def test_stuck_coalescing_client_keeps_the_newest_per_device(
    start_gateway: Any, feeder: Feeder
) -> None:
    gw = start_gateway(client_queue_items=50, batch_window_ms=2)
    rng = random.Random(3)
    payload = [rng.random() for _ in range(200)]
    devices = [f"dev-{n}" for n in range(5)]

    async def main() -> Received:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.connect((gw.host, gw.port))
        sock.setblocking(False)
        got = Received()
        async with await open_client(gw.ws_url, max_queue=1, sock=sock) as ws:
            await subscribe(ws, got, coalesce=True)
            for start in range(0, 2000, 40):  # ~8 MB while the client does not read
                batch = [
                    prediction(devices[i % 5], i).model_copy(update={"values": payload})
                    for i in range(start, start + 40)
                ]
                await anyio.to_thread.run_sync(feeder.write, batch)
            final_id = feeder.ids()[-1]
            with anyio.fail_after(30):
                while got.last_id != final_id:
                    got.record(await ws.recv(decode=False))
        return got

    got = anyio.run(main)
    seqs = [s for _, s in got.keys]
    assert len(seqs) < 2000  # some were coalesced away ...
    assert seqs == sorted(seqs)  # ... the rest arrived in stream order, once
    newest = {d: max(s for dd, s in got.keys if dd == d) for d in devices}
    assert newest == {devices[i % 5]: i for i in range(1995, 2000)}  # nobody lost its latest
