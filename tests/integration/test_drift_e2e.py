"""Feature drift end to end: simulator (injected sensor offset) -> Mosquitto -> a worker
process -> its /metrics gauge, the DriftStatus hash and the DriftEvent stream in Redis.

One fleet of 200 machines (load mode, 600 readings/s) runs healthy for the first
``DRIFT_START`` seconds, then half of them get a bearing-temperature offset that ramps to
+15 °C over 2 s. Stated bounds: while healthy the drift gauge stays below the threshold
(measured every second over ``DRIFT_START`` seconds); once the offset starts it crosses the
threshold within ``DETECT_WITHIN`` seconds, and a DriftEvent is in the stream.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from device_sim.app import run as run_sim
from device_sim.settings import SimSettings
from iot_contract import DriftEvent, DriftStatus, RedisKeys
from iotstream.localservices import free_port
from tests.harness.pipeline import read_stream
from tests.harness.processes import ROOT, CliProcess
from tests.harness.services import Service

pytestmark = pytest.mark.integration

THRESHOLD = 0.25
DRIFT_START = 10.0
DETECT_WITHIN = 10.0
LABELS = {"model": "fault-clf", "version": "1"}


def _psi_max(port: int) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "iotstream_worker_drift_psi_max" and sample.labels == LABELS:
                return float(sample.value)
    return None


def test_injected_offset_crosses_the_threshold_and_raises_an_event(
    mosquitto: Service,
    redis_service: Service,
    redis_keys: RedisKeys,
    rclient: redis.Redis,
    unique: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    env = {
        "WORKER_WORKER_ID": f"d{unique}",
        "WORKER_MQTT_URL": mosquitto.url,
        "WORKER_REDIS_URL": redis_service.url,
        "WORKER_REDIS_PREFIX": redis_keys.prefix,
        "WORKER_SHARE_GROUP": f"g{unique}",
        "WORKER_MODELS_DIR": str(ROOT / "models"),
        "WORKER_MODELS": "fault-clf",
        "WORKER_METRICS_PORT": str(port),
        "WORKER_DRIFT_WINDOW": "1500",
        "WORKER_DRIFT_MIN_WINDOW": "1000",
        "WORKER_DRIFT_INTERVAL": "1",
        "WORKER_DRIFT_THRESHOLD": str(THRESHOLD),
    }
    sim = SimSettings(
        mqtt_url=mosquitto.url,
        devices=200,
        rate=3,
        mode="load",
        device_prefix=f"f{unique}",
        drift=f"offset:bearing_temp_c=15,ramp=2,start={DRIFT_START:g}",
        drift_devices=0.5,
        duration=DRIFT_START + DETECT_WITHIN + 5,
        report_every=60,
    )
    stop = threading.Event()
    healthy: list[float] = []
    crossed_at = None
    with CliProcess(["worker"], env, tmp_path / "worker.log", "ready: consuming"):
        fleet = threading.Thread(target=run_sim, args=(sim, stop), daemon=True)
        fleet.start()
        started = time.monotonic()
        try:
            while (elapsed := time.monotonic() - started) < DRIFT_START + DETECT_WITHIN:
                value = _psi_max(port)
                if elapsed < DRIFT_START - 0.5 and value is not None:
                    healthy.append(value)
                if elapsed > DRIFT_START and value is not None and value >= THRESHOLD:
                    crossed_at = elapsed - DRIFT_START
                    break
                time.sleep(0.5)
            time.sleep(1.5)  # the status and the event are written at the same interval
        finally:
            stop.set()
            fleet.join(15)

    assert len(healthy) >= 5, "the worker measured too little before the drift started"
    assert max(healthy) < THRESHOLD, healthy
    assert crossed_at is not None, f"not detected within {DETECT_WITHIN} s"
    events = [
        DriftEvent.model_validate_json(raw) for raw in read_stream(rclient, redis_keys.drift_events)
    ]
    assert [(e.model, e.version, e.drifting, e.feature) for e in events] == [
        ("fault-clf", "1", True, "bearing_temp_c")
    ]
    assert events[0].psi_max >= THRESHOLD
    raw: Any = rclient.hget(redis_keys.drift, "fault-clf")
    assert raw is not None
    status = DriftStatus.model_validate_json(raw)
    assert status.drifting
    assert status.worker_id == f"d{unique}"
    assert 1000 <= status.window < 1500  # a window of 1500: nine full buckets and the open one
    temp = next(f for f in status.features if f.name == "bearing_temp_c")
    assert temp.live_mean > temp.reference_mean + 2.0
    print(f"healthy PSI max {max(healthy):.3f}; crossed {crossed_at:.1f} s after drift start")
