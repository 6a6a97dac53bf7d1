"""``GET /v1/drift`` on what a real worker writes (#14): simulator with an injected bearing
offset -> Mosquitto -> worker (real models, drift observer) -> Redis -> gateway process. The
gateway must serve the worker's own records: the drifting status with the offset feature on
top, and the event, none skipped. Bounded: a fleet of 200 machines at 600 readings/s, drift
from the start, a 1,000-reading window measured every second."""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from device_sim.app import run as run_sim
from device_sim.settings import SimSettings
from inference_worker.app import running_worker
from iot_contract import RedisKeys
from tests.component.gateway.support import SECRET, token
from tests.harness.pipeline import bundled_worker_settings
from tests.harness.services import Service

pytestmark = pytest.mark.integration

WITHIN_S = 30.0


@pytest.fixture
def drifting_fleet(
    mosquitto: Service, redis_service: Service, redis_keys: RedisKeys, unique: str
) -> Iterator[None]:
    """A worker measuring drift every second and 200 simulated machines, half of them with
    bearing temperature reading 15 °C high from the start."""
    worker = bundled_worker_settings(
        mosquitto.url,
        redis_service.url,
        redis_keys,
        unique,
        models=["fault-clf"],
        drift_window=1500,
        drift_min_window=1000,
        drift_interval=1.0,
        drift_threshold=0.25,
    )
    sim = SimSettings(
        mqtt_url=mosquitto.url,
        devices=200,
        rate=3,
        mode="load",
        device_prefix=f"f{unique[:6]}",
        drift="offset:bearing_temp_c=15,ramp=1,start=0",
        drift_devices=0.5,
        duration=WITHIN_S + 5,
        report_every=60,
    )
    stop = threading.Event()
    with running_worker(worker):
        thread = threading.Thread(target=run_sim, args=(sim, stop), daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(15)


def _drift(url: str) -> dict[str, Any]:
    request = urllib.request.Request(
        url + "/v1/drift?events=5", headers={"Authorization": f"Bearer {token()}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        body: dict[str, Any] = orjson.loads(response.read())
    return body


def test_the_gateway_serves_the_workers_drift_records(
    start_gateway: Any, drifting_fleet: None, unique: str
) -> None:
    gw = start_gateway(jwt_secret=SECRET)
    deadline = time.monotonic() + WITHIN_S
    view = _drift(gw.url)
    while not (view["events"] and any(m["drifting"] for m in view["models"])):
        assert time.monotonic() < deadline, f"no drifting model served within {WITHIN_S} s: {view}"
        time.sleep(0.5)
        view = _drift(gw.url)
    assert view["skipped"] == 0
    (status,) = view["models"]
    assert (status["model"], status["version"], status["worker_id"]) == (
        "fault-clf",
        "1",
        f"w-{unique}",
    )
    assert status["psi_max"] >= status["threshold"] == 0.25
    top = max(status["features"], key=lambda f: f["psi"])
    assert top["name"] == "bearing_temp_c" and top["psi"] == status["psi_max"]
    assert top["live_mean"] > top["reference_mean"] + 2.0
    event = view["events"][0]
    assert (event["model"], event["drifting"], event["feature"]) == (
        "fault-clf",
        True,
        "bearing_temp_c",
    )
