"""Redis goes away under a running gateway: the reader retries, /readyz says so, nothing
crashes, and with AOF (the deployment's setting) live clients carry on without a gap."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import anyio
import pytest

from iot_contract import RedisKeys
from iotstream.gateway_process import GatewayProcess
from iotstream.localservices import RedisProcess
from tests.component.gateway.support import Feeder, prediction
from tests.integration.gateway.conftest import (
    Received,
    collect,
    gateway_options,
    open_client,
    subscribe,
)

pytestmark = pytest.mark.integration


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz") as response:
            return bool(json.load(response)["checks"]["reader"])
    except urllib.error.HTTPError as exc:
        return bool(json.load(exc)["checks"]["reader"])


def wait_until(check: Any, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_reader_survives_a_redis_restart(tmp_path: Path, redis_keys: RedisKeys) -> None:
    with RedisProcess(tmp_path / "redis", appendonly=True) as rd:
        feeder = Feeder(rd.url, redis_keys)
        options = gateway_options(rd.url, redis_keys)
        with GatewayProcess(tmp_path / "gw", options) as gw:
            got = Received()

            async def main() -> None:
                async with await open_client(gw.ws_url) as ws:
                    await subscribe(ws, got)
                    feeder.write(prediction("d1", n) for n in range(10))
                    await collect(ws, got, 10, within=10)
                    await anyio.sleep(1.1)  # AOF fsyncs every second
                    await anyio.to_thread.run_sync(rd.kill)
                    await anyio.to_thread.run_sync(wait_until, lambda: not ready(gw.url))
                    await anyio.to_thread.run_sync(rd.start)
                    await anyio.to_thread.run_sync(wait_until, lambda: ready(gw.url))
                    feeder.write(prediction("d1", n) for n in range(10, 15))
                    await collect(ws, got, 15, within=10)

            anyio.run(main)
            assert [s for _, s in got.keys] == list(range(15))
            assert gw.running
        feeder.close()
