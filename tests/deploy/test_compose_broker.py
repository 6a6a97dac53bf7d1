"""The compose broker for real: make-passwd.sh (k8s/base/mosquitto/, which compose mounts)
writes the password file, a real Mosquitto runs compose/mosquitto/mosquitto.conf (paths and
port moved to a temp dir) with the rights make-passwd.sh wrote, and the compose health check,
the workers' shared subscription and the simulated devices' publishes behave as the compose
file assumes."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotstream.broker_tools.dynsec import DYNSEC_PLUGIN, DynsecFile, empty_config
from iotstream.broker_tools.templates import DEFAULT_MAX_PAYLOAD, max_packet_size
from iotstream.localservices import MosquittoProcess, find_binary, free_port
from tests.deploy.support import ROOT

pytestmark = pytest.mark.integration

SECRETS = {
    "MQTT_WORKER_PASSWORD": "w-secret",
    "MQTT_INGEST_PASSWORD": "i-secret",
    "MQTT_ADMIN_PASSWORD": "a-secret",
}
DEVICE_PASSWORD = "d-secret"


def _client(name: str) -> str:
    found = find_binary(name)
    assert found, f"{name} missing: apt-get install mosquitto-clients"
    return found


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where make-passwd.sh writes and the broker keeps its files."""
    return tmp_path_factory.mktemp("compose-broker")


@pytest.fixture(scope="module")
def broker(work: Path) -> Iterator[MosquittoProcess]:
    env = {
        **os.environ,
        **SECRETS,
        "MQTT_DEVICE_PASSWORD": DEVICE_PASSWORD,
        "DEVICES": "12",
        "PASSWD_FILE": str(work / "passwd"),
        "PASSWD_OWNER": f"{os.getuid()}:{os.getgid()}",
    }
    subprocess.run(
        ["sh", str(ROOT / "k8s" / "base" / "mosquitto" / "make-passwd.sh")], env=env, check=True
    )
    port = free_port()
    conf = (ROOT / "compose" / "mosquitto" / "mosquitto.conf").read_text()
    conf = (
        conf.replace("/mosquitto/auth/passwd", str(work / "passwd"))
        .replace("/mosquitto/auth/dynamic-security.json", str(work / "dynamic-security.json"))
        .replace("/usr/lib/mosquitto_dynamic_security.so", DYNSEC_PLUGIN)
        .replace("/mosquitto/data/", f"{work}/")
        .replace("listener 1883 0.0.0.0", f"listener {port} 127.0.0.1")
    )
    conf = f"user {getpass.getuser()}\n{conf}"  # the image runs it as its own mosquitto user
    settings = [ln for ln in conf.splitlines() if ln and not ln.startswith("#")]
    assert not [ln for ln in settings if "/mosquitto/" in ln]
    with MosquittoProcess(work, config=conf, port=port) as proc:
        yield proc


def _sub(broker: MosquittoProcess, user: str, password: str, topic: str, wait: int) -> list[str]:
    return [
        _client("mosquitto_sub"), "-h", "127.0.0.1", "-p", str(broker.port), "-V", "5",
        "-u", user, "-P", password, "-t", topic, "-C", "1", "-W", str(wait),
    ]  # fmt: skip


def _pub(broker: MosquittoProcess, user: str | None, topic: str, payload: str) -> int:
    auth = ["-u", user, "-P", DEVICE_PASSWORD] if user else []
    argv = [_client("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(broker.port), "-V", "5",
            *auth, "-q", "1", "-t", topic, "-m", payload]  # fmt: skip
    return subprocess.run(argv, capture_output=True, check=False, timeout=10).returncode


def test_healthcheck_command_succeeds(broker: MosquittoProcess) -> None:
    argv = _sub(broker, "admin", SECRETS["MQTT_ADMIN_PASSWORD"], "$SYS/broker/version", 3)
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    assert result.returncode == 0, result.stderr
    assert "mosquitto" in result.stdout


def test_healthcheck_fails_with_a_wrong_password(broker: MosquittoProcess) -> None:
    argv = _sub(broker, "admin", "wrong", "$SYS/broker/version", 3)
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    assert result.returncode != 0


def test_worker_receives_device_telemetry_only_from_the_right_device(
    broker: MosquittoProcess,
) -> None:
    argv = _sub(
        broker, "worker", SECRETS["MQTT_WORKER_PASSWORD"], "$share/workers/devices/+/telemetry", 8
    )
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as worker:
        time.sleep(0.5)  # subscribed
        assert _pub(broker, None, "devices/sim-03/telemetry", "anonymous") != 0
        _pub(broker, "sim-03", "devices/sim-04/telemetry", "spoofed")
        assert _pub(broker, "sim-03", "devices/sim-03/telemetry", "genuine") == 0
        out, _ = worker.communicate(timeout=10)
    assert out.strip() == "genuine"


def test_ingest_subscribes_to_all_telemetry_without_a_share_and_nothing_else(
    broker: MosquittoProcess,
) -> None:
    """The staged intake's account: devices/+/telemetry (not shared) is granted and delivers;
    a $share group, status and publishing are refused."""
    password = SECRETS["MQTT_INGEST_PASSWORD"]
    for topic in ("$share/workers/devices/+/telemetry", "devices/+/status", "#"):
        argv = _sub(broker, "ingest", password, topic, 2)
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
        assert "All subscription requests were denied" in result.stderr, topic
    argv = _sub(broker, "ingest", password, "devices/+/telemetry", 8)
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as ingest:
        # Publish until the subscriber has its message (it exits after one: -C 1).
        deadline = time.monotonic() + 8
        while ingest.poll() is None and time.monotonic() < deadline:
            assert _pub(broker, "sim-05", "devices/sim-05/telemetry", "staged") == 0
            with contextlib.suppress(subprocess.TimeoutExpired):
                ingest.wait(timeout=0.2)
        out, _ = ingest.communicate(timeout=10)
    assert out.strip() == "staged"


def test_every_simulated_device_has_an_account(broker: MosquittoProcess) -> None:
    # DEVICES=12 -> ids sim-00 .. sim-11, as `iotstream sim --devices 12` names them.
    assert _pub(broker, "sim-11", "devices/sim-11/status", "online") == 0
    assert _pub(broker, "sim-12", "devices/sim-12/status", "online") != 0


def test_device_cannot_subscribe_to_the_workers_share_or_another_device(
    broker: MosquittoProcess,
) -> None:
    """Subscriptions are checked when made (dynamic security), not only at delivery."""
    for topic in ("$share/workers/devices/+/telemetry", "$share/x/#", "devices/sim-04/inference"):
        argv = _sub(broker, "sim-03", DEVICE_PASSWORD, topic, 2)
        result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
        assert "All subscription requests were denied" in result.stderr, topic
    argv = _sub(broker, "sim-03", DEVICE_PASSWORD, "devices/sim-03/inference", 1)
    result = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10)
    assert "denied" not in result.stderr and "Timed out" in result.stderr


def test_make_passwd_writes_the_same_rights_as_the_tooling(
    broker: MosquittoProcess, work: Path
) -> None:
    written = json.loads((work / "dynamic-security.json").read_text())
    expected = DynsecFile(work / "from-tooling.json")
    for user in ["worker", "ingest", "admin", *(f"sim-{i:02d}" for i in range(12))]:
        expected.grant(user)
    assert written["defaultACLAccess"] == empty_config()["defaultACLAccess"]
    assert written["clients"] == expected.config["clients"]
    assert written["roles"] == expected.config["roles"]


def test_packet_limit_is_the_one_the_tooling_derives() -> None:
    for conf in (
        ROOT / "compose" / "mosquitto" / "mosquitto.conf",
        ROOT / "k8s" / "base" / "mosquitto" / "mosquitto.conf",
        ROOT / "k8s" / "overlays" / "edge" / "mosquitto-edge.conf.in",
    ):
        assert f"\nmax_packet_size {max_packet_size(DEFAULT_MAX_PAYLOAD)}\n" in conf.read_text()
