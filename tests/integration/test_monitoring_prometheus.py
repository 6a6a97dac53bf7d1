"""The shipped monitoring against a real Prometheus: a running pipeline (real Mosquitto and
Redis, ``iotstream ingest``, two stream workers and a gateway as processes, the simulator
publishing), scraped by ``prometheus`` with the shipped rules. Every target is up, the key
series and recording rules have values, and stopping a worker fires IotstreamTargetDown for
that worker only. The broker probe (the shipped blackbox module and compose's scrape job for
it, on a real ``prometheus-blackbox-exporter``) succeeds against a broker that refuses
anonymous logins and fires IotstreamBrokerDown when the broker hangs.

The rules are the file in monitoring/ with each ``for:`` shortened to 2 s (scrapes and
evaluations every second) so the test runs in seconds; the expressions are unchanged.
"""

from __future__ import annotations

import getpass
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from device_sim.app import run as run_sim
from device_sim.settings import SimSettings
from iot_contract import RedisKeys
from iotstream.gateway_process import GatewayProcess
from iotstream.localservices import LocalServiceError, MosquittoProcess, free_port
from tests.harness.processes import ROOT, CliProcess
from tests.harness.prometheus import BlackboxProcess, PrometheusProcess, eventually
from tests.harness.services import Service

pytestmark = pytest.mark.integration

RULES = ROOT / "monitoring" / "prometheus" / "rules" / "iotstream.rules.yml"
SCRAPE_CONFIG = ROOT / "monitoring" / "prometheus" / "prometheus.yml"
BLACKBOX_CONFIG = ROOT / "monitoring" / "blackbox" / "blackbox.yml"


@dataclass
class Pipeline:
    """The running services and where Prometheus finds their /metrics."""

    workers: dict[str, CliProcess]
    targets: dict[str, list[str]]


def _fast_rules(dest: Path) -> Path:
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = "2s"
    dest.write_text(yaml.safe_dump(rules, sort_keys=False))
    return dest


def _worker_env(redis_service: Service, keys: RedisKeys, **extra: str) -> dict[str, str]:
    return {
        "WORKER_REDIS_URL": redis_service.url,
        "WORKER_REDIS_PREFIX": keys.prefix,
        "WORKER_MODELS_DIR": str(ROOT / "models"),
        **extra,
    }


@pytest.fixture
def pipeline(
    mosquitto: Service, redis_service: Service, redis_keys: RedisKeys, unique: str, tmp_path: Path
) -> Iterator[Pipeline]:
    ports = {name: free_port() for name in ("ingest", "worker-1", "worker-2")}
    ingest = CliProcess(
        ["ingest"],
        _worker_env(
            redis_service,
            redis_keys,
            WORKER_WORKER_ID=f"ingest-{unique}",
            WORKER_MQTT_URL=mosquitto.url,
            WORKER_METRICS_PORT=str(ports["ingest"]),
        ),
        tmp_path / "ingest.log",
        "ready: staging",
    )
    workers = {
        name: CliProcess(
            ["worker"],
            _worker_env(
                redis_service,
                redis_keys,
                WORKER_WORKER_ID=f"{name}-{unique}",
                WORKER_SOURCE="stream",
                WORKER_SHARE_GROUP=f"g{unique}",
                WORKER_METRICS_PORT=str(ports[name]),
            ),
            tmp_path / f"{name}.log",
            "ready: consuming",
        )
        for name in ("worker-1", "worker-2")
    }
    gateway = GatewayProcess(
        tmp_path / "gateway",
        {"redis_url": redis_service.url, "redis_prefix": redis_keys.prefix, "dev_mode": True},
    )
    with ingest, workers["worker-1"], workers["worker-2"], gateway:
        yield Pipeline(
            workers=workers,
            targets={
                "ingest": [f"127.0.0.1:{ports['ingest']}"],
                "worker": [f"127.0.0.1:{ports['worker-1']}", f"127.0.0.1:{ports['worker-2']}"],
                "gateway": [f"127.0.0.1:{gateway.port}"],
            },
        )


@pytest.fixture
def prometheus(pipeline: Pipeline, tmp_path: Path) -> Iterator[PrometheusProcess]:
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(_fast_rules(tmp_path / "iotstream.rules.yml"))],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": targets}]}
            for job, targets in pipeline.targets.items()
        ],
    }
    try:
        server = PrometheusProcess(tmp_path / "prometheus", config)
    except LocalServiceError as exc:
        pytest.fail(str(exc), pytrace=False)
    with server:
        yield server


def _value(prom: PrometheusProcess, promql: str) -> float | None:
    result = prom.query(promql)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_pipeline_and_fires_when_a_worker_stops(
    pipeline: Pipeline, prometheus: PrometheusProcess, mosquitto: Service, unique: str
) -> None:
    stop = threading.Event()
    sim = SimSettings(mqtt_url=mosquitto.url, devices=4, rate=10, device_prefix=f"m{unique}")
    publisher = threading.Thread(target=run_sim, args=(sim, stop), daemon=True)
    publisher.start()
    try:
        expected = {t for targets in pipeline.targets.values() for t in targets}

        def all_up() -> bool:
            up = {t["labels"]["instance"] for t in prometheus.targets() if t["health"] == "up"}
            return up == expected

        eventually(all_up, 30, "every target up")
        # The key series, raw and recorded: intake, predictions, inference, gateway.
        for promql in (
            'sum(worker_readings_received_total{job="ingest"}) > 0',
            'sum(worker_predictions_stored_total{job="worker"}) > 0',
            'sum(worker_inference_seconds_count{job="worker"}) > 0',
            "iotstream:worker_predictions_stored:rate1m > 0",
            "iotstream:worker_backlog",
            "iotstream:gateway_connections",
            'up{job="gateway"} == 1',
        ):

            def present(q: str = promql) -> bool:
                return _value(prometheus, q) is not None

            eventually(present, 30, promql)

        pipeline.workers["worker-2"].terminate()
        stopped = pipeline.targets["worker"][1]

        def fired() -> list[dict[str, Any]]:
            return [
                a
                for a in prometheus.alerts()
                if a["labels"]["alertname"] == "IotstreamTargetDown" and a["state"] == "firing"
            ]

        firing = eventually(fired, 30, "IotstreamTargetDown firing")
        assert [a["labels"]["instance"] for a in firing] == [stopped]
        assert firing[0]["labels"]["job"] == "worker"
        assert firing[0]["labels"]["severity"] == "critical"
        # The other worker keeps storing predictions: no "no predictions" alert.
        assert _value(prometheus, 'ALERTS{alertname="IotstreamNoPredictions"}') is None
    finally:
        stop.set()
        publisher.join(15)
    assert not publisher.is_alive(), "the simulator did not stop"


def test_broker_probe_succeeds_on_a_refusing_broker_and_fires_when_it_hangs(
    tmp_path: Path,
) -> None:
    user = getpass.getuser()
    conf = "listener {port} 127.0.0.1\nallow_anonymous false\nuser " + user + "\n"
    try:
        broker = MosquittoProcess(tmp_path / "broker", config=conf)
        blackbox = BlackboxProcess(tmp_path / "blackbox", BLACKBOX_CONFIG)
    except LocalServiceError as exc:
        pytest.fail(str(exc), pytrace=False)
    with broker, blackbox:
        target = f"127.0.0.1:{broker.port}"
        assert blackbox.probe("mqtt_connect", target) == 1.0  # CONNACK "not authorised"
        # compose's scrape job for the broker, pointed at these two processes
        shipped = yaml.safe_load(SCRAPE_CONFIG.read_text())
        job = next(j for j in shipped["scrape_configs"] if j["job_name"] == "mosquitto")
        job["static_configs"] = [{"targets": [target]}]
        job["relabel_configs"][-1]["replacement"] = f"127.0.0.1:{blackbox.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(_fast_rules(tmp_path / "iotstream.rules.yml"))],
            "scrape_configs": [job],
        }
        with PrometheusProcess(tmp_path / "prometheus", config) as prom:
            eventually(
                lambda: _value(prom, 'probe_success{job="mosquitto"} == 1') is not None,
                30,
                "the broker probe succeeding through Prometheus",
            )
            assert broker.pid is not None
            os.kill(broker.pid, signal.SIGSTOP)  # hung: TCP still accepted, no CONNACK
            try:

                def broker_down() -> list[dict[str, Any]]:
                    return [
                        a
                        for a in prom.alerts()
                        if a["labels"]["alertname"] == "IotstreamBrokerDown"
                        and a["state"] == "firing"
                    ]

                (alert,) = eventually(broker_down, 40, "IotstreamBrokerDown firing")
                assert alert["labels"]["instance"] == target
            finally:
                os.kill(broker.pid, signal.SIGCONT)
