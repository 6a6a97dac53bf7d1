"""The real worker process with the real ONNX models: simulator -> Mosquitto -> worker -> Redis."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from device_sim.app import run as run_sim
from device_sim.settings import SimSettings
from iot_contract import Reading, RedisKeys
from iot_models.onnx_model import load_models
from tests.harness.metrics import unexposed
from tests.harness.pipeline import predictions, publish, reading_messages, settle, wait_for
from tests.harness.processes import ROOT, CliProcess
from tests.harness.services import Service

pytestmark = pytest.mark.integration


def worker_process(
    mosquitto: Service,
    redis_service: Service,
    keys: RedisKeys,
    worker_id: str,
    log: Path,
    group: str,
) -> CliProcess:
    env = {
        "WORKER_WORKER_ID": worker_id,
        "WORKER_MQTT_URL": mosquitto.url,
        "WORKER_REDIS_URL": redis_service.url,
        "WORKER_REDIS_PREFIX": keys.prefix,
        "WORKER_SHARE_GROUP": group,
        "WORKER_MODELS_DIR": str(ROOT / "models"),
        "WORKER_MAX_BATCH": "32",
    }
    return CliProcess(["worker"], env, log, "ready: consuming")


def test_simulated_fleet_predictions_equal_a_direct_onnx_run(
    mosquitto: Service,
    redis_service: Service,
    redis_keys: RedisKeys,
    rclient: redis.Redis,
    unique: str,
    tmp_path: Path,
) -> None:
    prefix = f"e{unique}"
    with worker_process(
        mosquitto, redis_service, redis_keys, f"w{unique}", tmp_path / "w.log", f"g{unique}"
    ):
        sim = SimSettings(
            mqtt_url=mosquitto.url,
            devices=10,
            rate=20,
            count=30,
            device_prefix=prefix,
            codec="msgpack",
        )
        stats = run_sim(sim)
        assert stats.published == 300
        assert wait_for(rclient, redis_keys.predictions, 300) == 300
    got = predictions(rclient, redis_keys)
    assert settle(rclient, redis_keys.predictions) == 300
    assert len({(p.device_id, p.seq) for p in got}) == 300

    # Re-create the same readings (same seed) and score them directly with ONNX Runtime.
    from device_sim.fleet import machine_for

    models = load_models(ROOT / "models", names=["fault-clf"])
    model = models["fault-clf"]
    by_key = {(p.device_id, p.seq): p for p in got}
    rows, keys, truths = [], [], []
    for i in range(10):
        machine = machine_for(sim, i)
        for seq in range(30):
            features, label = machine.step(1 / 20)
            rows.append(features)
            keys.append((f"{prefix}-{i}", seq))
            truths.append(label)
    direct = model.predict(np.stack(rows).astype(np.float32))
    for key, out, truth in zip(keys, direct, truths, strict=True):
        p = by_key[key]
        assert p.label == out.label
        assert p.score == pytest.approx(out.score, abs=1e-6)
        assert p.truth == truth
        assert p.model.name == "fault-clf"
        assert p.model.variant == model.info.variant


def test_worker_kill_9_and_restart_loses_nothing_and_duplicates_nothing(
    mosquitto: Service,
    redis_service: Service,
    redis_keys: RedisKeys,
    rclient: redis.Redis,
    unique: str,
    tmp_path: Path,
) -> None:
    device = f"k{unique}"
    readings = [
        Reading(device_id=device, seq=i, ts=time.time(), features=[0.5] * 16) for i in range(3000)
    ]
    worker = worker_process(
        mosquitto, redis_service, redis_keys, f"w{unique}", tmp_path / "w.log", f"g{unique}"
    )
    worker.start()

    def send() -> None:
        for k in range(0, len(readings), 100):
            publish(mosquitto, reading_messages(readings[k : k + 100]), client_id=f"p{unique}")
            time.sleep(0.05)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert wait_for(rclient, redis_keys.predictions, 300) >= 300
        worker.kill()  # SIGKILL mid-stream: in-flight readings are unacknowledged
        killed_at = int(rclient.xlen(redis_keys.predictions))
        time.sleep(1.0)
        worker.start()
        sender.join(60)
        assert wait_for(rclient, redis_keys.predictions, 3000, timeout=60) == 3000
        assert settle(rclient, redis_keys.predictions) == 3000
    finally:
        worker.terminate()
    assert killed_at < 3000, "the kill happened mid-stream"
    stored = predictions(rclient, redis_keys)
    assert sorted(p.seq for p in stored) == list(range(3000))
    assert "session present: True" in worker.tail()


def _get(url: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read()


def test_worker_serves_health_readiness_and_metrics(
    mosquitto: Service,
    redis_service: Service,
    redis_keys: RedisKeys,
    unique: str,
    tmp_path: Path,
) -> None:
    from iotstream.localservices import free_port

    port = free_port()
    worker = worker_process(
        mosquitto, redis_service, redis_keys, f"h{unique}", tmp_path / "w.log", f"g{unique}"
    )
    worker.env["WORKER_METRICS_PORT"] = str(port)
    with worker:
        base = f"http://127.0.0.1:{port}"
        assert _get(f"{base}/healthz") == (200, b"ok\n")
        assert _get(f"{base}/readyz") == (200, b"ready\n")
        status, body = _get(f"{base}/metrics")
        assert status == 200
        assert unexposed(body.decode(), ("inference_worker", "metrics.toml")) == []
        assert _get(f"{base}/nope")[0] == 404
