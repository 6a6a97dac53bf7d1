"""The edge overlay's broker for real: a central Mosquitto with the k8s base config and a
node-local one with k8s/overlays/edge/mosquitto-edge.conf.in (rendered as its init container
does, address and paths moved to loopback), both with password files from make-passwd.sh.
Telemetry stays on the node for its worker, status goes up, inference comes down."""

from __future__ import annotations

import getpass
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotstream.broker_tools.dynsec import DYNSEC_PLUGIN
from iotstream.localservices import MosquittoProcess, find_binary, free_port
from tests.deploy.support import ROOT

pytestmark = pytest.mark.integration

PW = {
    "MQTT_WORKER_PASSWORD": "w-pw",
    "MQTT_INGEST_PASSWORD": "i-pw",
    "MQTT_ADMIN_PASSWORD": "a-pw",
    "MQTT_DEVICE_PASSWORD": "d-pw",
}
BRIDGE_PW = "b-pw"


def _passwd(path: Path, **extra: str) -> None:
    env = {**os.environ, **PW, "PASSWD_FILE": str(path), **extra}
    env["PASSWD_OWNER"] = f"{os.getuid()}:{os.getgid()}"
    script = ROOT / "k8s" / "base" / "mosquitto" / "make-passwd.sh"
    subprocess.run(["sh", str(script)], env=env, check=True, capture_output=True)


def _localise(conf: str, work: Path, port: int) -> str:
    conf = (
        conf.replace("/mosquitto/auth/passwd", str(work / "passwd"))
        .replace("/mosquitto/auth/dynamic-security.json", str(work / "dynamic-security.json"))
        .replace("/usr/lib/mosquitto_dynamic_security.so", DYNSEC_PLUGIN)
        .replace("/mosquitto/data/", f"{work}/")
        .replace("listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
    )
    return f"user {getpass.getuser()}\n{conf}"


@pytest.fixture(scope="module")
def brokers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    central_dir = tmp_path_factory.mktemp("central")
    edge_dir = tmp_path_factory.mktemp("edge")
    _passwd(central_dir / "passwd", BRIDGE_NAME="bridge-site1", MQTT_BRIDGE_PASSWORD=BRIDGE_PW)
    _passwd(edge_dir / "passwd", DEVICES="2")
    central_port, edge_port = free_port(), free_port()
    central_conf = (ROOT / "k8s" / "base" / "mosquitto" / "mosquitto.conf").read_text()
    edge_conf = (
        (ROOT / "k8s" / "overlays" / "edge" / "mosquitto-edge.conf.in")
        .read_text()
        .replace("@NODE_NAME@", "node1")
        .replace("@BRIDGE_PASSWORD@", BRIDGE_PW)
        .replace("address mosquitto:1883", f"address 127.0.0.1:{central_port}")
    )
    central = MosquittoProcess(
        central_dir, config=_localise(central_conf, central_dir, central_port), port=central_port
    )
    edge = MosquittoProcess(
        edge_dir, config=_localise(edge_conf, edge_dir, edge_port), port=edge_port
    )
    with central, edge:
        _wait_bridge(edge_port)
        yield central_port, edge_port


def _cli(name: str, port: int, user: str, password: str, *args: str) -> list[str]:
    exe = find_binary(name)
    assert exe, "apt-get install mosquitto-clients"
    return [exe, "-h", "127.0.0.1", "-p", str(port), "-V", "5", "-u", user, "-P", password, *args]


def _wait_bridge(edge_port: int) -> None:
    argv = _cli("mosquitto_sub", edge_port, "admin", PW["MQTT_ADMIN_PASSWORD"],
                "-t", "$SYS/broker/connection/+/state", "-C", "1", "-W", "2")  # fmt: skip
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
        if out == "1":
            return
        time.sleep(0.3)
    raise AssertionError("the edge bridge did not connect to the central broker")


def _pub(port: int, user: str, password: str, topic: str, payload: str) -> None:
    argv = _cli("mosquitto_pub", port, user, password, "-q", "1", "-t", topic, "-m", payload)
    subprocess.run(argv, check=True, capture_output=True, timeout=10)


def test_status_goes_up_but_telemetry_stays_on_the_node(brokers: tuple[int, int]) -> None:
    central, edge = brokers
    device = ("sim-0", PW["MQTT_DEVICE_PASSWORD"])
    central_sub = _cli("mosquitto_sub", central, "admin", PW["MQTT_ADMIN_PASSWORD"],
                       "-t", "devices/#", "-v", "-C", "1", "-W", "10")  # fmt: skip
    edge_worker = _cli("mosquitto_sub", edge, "worker", PW["MQTT_WORKER_PASSWORD"],
                       "-t", "$share/edge/devices/+/telemetry", "-C", "1", "-W", "10")  # fmt: skip
    with (
        subprocess.Popen(central_sub, stdout=subprocess.PIPE, text=True) as up,
        subprocess.Popen(edge_worker, stdout=subprocess.PIPE, text=True) as local,
    ):
        time.sleep(0.5)
        _pub(edge, *device, "devices/sim-0/telemetry", "reading-1")
        _pub(edge, *device, "devices/sim-0/status", "online")
        up_out, _ = up.communicate(timeout=15)
        local_out, _ = local.communicate(timeout=15)
    assert local_out.strip() == "reading-1"  # the node's worker got the reading
    assert up_out.strip() == "devices/sim-0/status online"  # first thing up: status, not telemetry


def test_inference_results_come_down_to_the_device(brokers: tuple[int, int]) -> None:
    central, edge = brokers
    device_sub = _cli("mosquitto_sub", edge, "sim-1", PW["MQTT_DEVICE_PASSWORD"],
                      "-t", "devices/sim-1/inference", "-C", "1", "-W", "10")  # fmt: skip
    with subprocess.Popen(device_sub, stdout=subprocess.PIPE, text=True) as device:
        time.sleep(0.5)
        _pub(central, "worker", PW["MQTT_WORKER_PASSWORD"], "devices/sim-1/inference", "ok")
        out, _ = device.communicate(timeout=15)
    assert out.strip() == "ok"
