"""The demo's preflight: it refuses taken ports clearly, before starting anything."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from iotstream.commands.demo import PROCFILE, check_ports_free
from iotstream.localservices import free_port


def test_taken_port_is_reported_and_free_ports_pass() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken_port = busy.getsockname()[1]
        free = free_port()
        problems = check_ports_free({"gateway": taken_port, "redis": free})
    assert len(problems) == 1
    assert f"127.0.0.1:{taken_port} is in use" in problems[0]
    assert problems[0].startswith("gateway")


def test_same_port_twice_is_refused() -> None:
    port = free_port()
    assert check_ports_free({"a": port, "b": port}) == [f"b: port {port} is given twice"]


def test_a_port_past_the_last_is_refused() -> None:
    assert check_ports_free({"ingest": 65537}) == ["ingest: 65537 is not a TCP port"]


def test_a_bad_port_variable_is_refused_before_anything_starts(tmp_path: Path) -> None:
    for value in ("abc", "0", "70000"):
        result = subprocess.run(
            [sys.executable, "-m", "iotstream", "demo", "--dir", str(tmp_path / "d")],
            env={**os.environ, "DEMO_REDIS_PORT": value},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2, result.stderr
        assert (
            f"argument --redis-port: '{value}' is not a TCP port 1-65535 (option or "
            "$DEMO_REDIS_PORT)"
        ) in result.stderr
        assert not (tmp_path / "d").exists()


def test_demo_refuses_to_start_on_a_taken_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "iotstream", "demo", "--dir", str(tmp_path / "d")],
            env={**os.environ, "DEMO_HTTP_PORT": str(port), "DEMO_MQTT_PORT": str(free_port())},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert "refusing to start" in result.stderr
    assert f"127.0.0.1:{port} is in use" in result.stderr
    assert not (tmp_path / "d").exists()  # nothing prepared, nothing started


def test_procfile_runs_every_service_with_distinct_stable_worker_ids() -> None:
    lines = [ln for ln in PROCFILE.read_text().splitlines() if ln and not ln.startswith("#")]
    names = [ln.split(":", 1)[0] for ln in lines]
    assert names == [
        "mosquitto", "redis", "ingest", "worker1", "worker2", "gateway", "sim", "banner"
    ]  # fmt: skip
    ids = [ln.split("WORKER_WORKER_ID=")[1].split()[0] for ln in lines if "WORKER_WORKER_ID" in ln]
    assert ids == ["demo-ingest", "demo-worker-1", "demo-worker-2"]
    redis = next(ln for ln in lines if ln.startswith("redis:"))
    assert "--appendonly yes" in redis
    assert "--bind 127.0.0.1" in redis
