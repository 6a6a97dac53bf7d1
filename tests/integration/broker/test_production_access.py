"""broker/production.conf with accounts made by the tooling (password file + dynamic security
file) on a real Mosquitto: who may connect, read, write and subscribe."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from iot_contract import inference_topic, shared_subscription, status_topic, telemetry_topic
from iotstream.broker_tools import PasswordFile
from iotstream.broker_tools.accounts import revoke, rotate
from iotstream.broker_tools.dynsec_control import control_session
from iotstream.broker_tools.templates import DEFAULT_MAX_PAYLOAD, max_packet_size
from iotstream.cli import main
from tests.integration.broker.support import Broker, Client, clients

pytestmark = pytest.mark.integration

NOT_AUTHORIZED = 0x87
PACKET_TOO_LARGE = 0x95
WORKERS = shared_subscription("workers")


def _login(
    made: list[Client],
    central: Broker,
    user: str,
    client_id: str,
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
) -> Client:
    client = Client(client_id, protocol=protocol).login(user, central.secrets[user])
    made.append(client)
    assert client.outcome(central.port) == "ok"
    return client


def test_anonymous_connect_is_refused(central: Broker) -> None:
    with clients() as made:
        made.append(anonymous := Client("anon"))
        assert anonymous.outcome(central.port) == "refused: Not authorized"


def test_wrong_password_is_refused(central: Broker) -> None:
    with clients() as made:
        made.append(wrong := Client("wrong").login("dev-a", central.secrets["dev-b"]))
        assert wrong.outcome(central.port) == "refused: Not authorized"
        made.append(unknown := Client("unknown").login("dev-zz", "whatever"))
        assert unknown.outcome(central.port) == "refused: Not authorized"


def test_device_cannot_publish_as_another_device(central: Broker) -> None:
    with clients() as made:
        admin = _login(made, central, "admin", "admin-spy")
        admin.subscribe("devices/#")
        device_a = _login(made, central, "dev-a", "dev-a")
        forged = device_a.publish(telemetry_topic("dev-b"), b"forged")
        assert forged is not None and forged.value == NOT_AUTHORIZED
        forged_status = device_a.publish(status_topic("dev-b"), b"offline")
        assert forged_status is not None and forged_status.value == NOT_AUTHORIZED
        own = device_a.publish(telemetry_topic("dev-a"), b"genuine")
        assert own is not None and own.value == 0
        got = admin.drain()
        assert [(m.topic, m.payload) for m in got] == [(telemetry_topic("dev-a"), b"genuine")]


def test_device_wildcard_subscription_is_refused(central: Broker) -> None:
    """Subscriptions are checked when made: '#' and other devices' topics get SUBACK 0x87."""
    with clients() as made:
        device_a = _login(made, central, "dev-a", "dev-a-wild")
        refused = [*device_a.subscribe("#"), *device_a.subscribe("devices/+/inference")]
        assert [rc.value for rc in refused] == [NOT_AUTHORIZED, NOT_AUTHORIZED]
        device_a.subscribe(inference_topic("dev-a"))
        worker = _login(made, central, "worker", "worker-w")
        worker.publish(inference_topic("dev-b"), b"for-b")
        worker.publish(inference_topic("dev-a"), b"for-a")
        got = {(m.topic, bytes(m.payload)) for m in device_a.drain()}
        assert got == {(inference_topic("dev-a"), b"for-a")}


def test_worker_reads_shared_telemetry_and_writes_inference(central: Broker) -> None:
    with clients() as made:
        workers = [_login(made, central, "worker", f"worker-{i}") for i in range(2)]
        for worker in workers:
            (rc,) = worker.subscribe(shared_subscription("workers"))
            assert rc.value == 1
        device_a = _login(made, central, "dev-a", "dev-a-pub")
        device_a.subscribe(inference_topic("dev-a"))
        for i in range(10):
            device_a.publish(telemetry_topic("dev-a"), str(i).encode())
        per_worker = [len(w.drain()) for w in workers]
        assert sum(per_worker) == 10 and min(per_worker) > 0
        assert workers[0].publish(inference_topic("dev-a"), b"p").value == 0  # type: ignore[union-attr]
        assert [m.payload for m in device_a.drain()] == [b"p"]
        denied = workers[0].publish("elsewhere/topic", b"x")
        assert denied is not None and denied.value == NOT_AUTHORIZED


def test_admin_reads_everything(central: Broker) -> None:
    with clients() as made:
        admin = _login(made, central, "admin", "admin-all")
        admin.subscribe("#")
        device_b = _login(made, central, "dev-b", "dev-b-x")
        device_b.publish(telemetry_topic("dev-b"), b"t")
        assert [m.topic for m in admin.drain()] == [telemetry_topic("dev-b")]


def test_payload_limit_is_the_workers_and_a_bigger_packet_is_refused_visibly(
    central: Broker,
) -> None:
    """max_payload (= WORKER_MAX_PAYLOAD) + 1 KiB is the packet limit, announced in CONNACK.
    Payloads up to it reach the worker (which dead-letters those above max_payload as
    "oversize"); a bigger PUBLISH is dropped, the v5 sender gets DISCONNECT 0x95 and the
    broker logs the disconnect."""
    limit = max_packet_size(DEFAULT_MAX_PAYLOAD)
    with clients() as made:
        worker = _login(made, central, "worker", "worker-size")
        worker.subscribe(shared_subscription("size"))
        device_a = _login(made, central, "dev-a", "dev-a-big")
        assert device_a.connack_properties.MaximumPacketSize == limit
        for size in (DEFAULT_MAX_PAYLOAD, DEFAULT_MAX_PAYLOAD + 1):
            assert device_a.publish(telemetry_topic("dev-a"), b"x" * size).value == 0  # type: ignore[union-attr]
        assert [len(m.payload) for m in worker.drain()] == [
            DEFAULT_MAX_PAYLOAD,
            DEFAULT_MAX_PAYLOAD + 1,
        ]
        device_a.paho.reconnect_delay_set(30, 30)  # keep paho from resending it at once
        big = device_a.paho.publish(telemetry_topic("dev-a"), b"x" * limit, qos=1)
        reason = device_a.wait("disconnect")
        assert reason.value == PACKET_TOO_LARGE
        assert not big.is_published()
        assert worker.drain(0.5) == []
        _wait_for_log(central, "Client dev-a-big disconnected due to oversize packet.")


def test_oversized_packet_from_mqtt311_device_closes_its_connection(central: Broker) -> None:
    with clients() as made:
        device = _login(
            made, central, "dev-a", "dev-a-big311", protocol=MQTTProtocolVersion.MQTTv311
        )
        device.paho.reconnect_delay_set(30, 30)
        limit = max_packet_size(DEFAULT_MAX_PAYLOAD)
        device.paho.publish(telemetry_topic("dev-a"), b"x" * limit, qos=1)
        device.wait("disconnect")
        _wait_for_log(central, "Client dev-a-big311 disconnected due to oversize packet.")


def _wait_for_log(broker: Broker, line: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while line not in broker.process.log_tail(200):
        assert time.monotonic() < deadline, f"{line!r} not logged:\n{broker.process.log_tail()}"
        time.sleep(0.05)


def test_rotated_device_must_reconnect_with_its_new_secret(central: Broker) -> None:
    """rotate + SIGHUP: the live connection is closed; only the new secret works after."""
    with clients() as made:
        device_a = _login(made, central, "dev-a", "dev-a-rotated")
        device_a.paho.reconnect_delay_set(30, 30)
        passwords = PasswordFile(central.etc / "passwd")
        old, central.secrets["dev-a"] = central.secrets["dev-a"], rotate(passwords, "dev-a")
        passwords.save()
        central.reload()
        device_a.wait("disconnect")
        made.append(stale := Client("dev-a-old").login("dev-a", old))
        assert stale.outcome(central.port) == "refused: Not authorized"
        assert _login(made, central, "dev-a", "dev-a-new").paho.is_connected()


def test_revoked_device_is_cut_off(central: Broker) -> None:
    """revoke --broker: the plugin drops the client's rights (and its connection) at once;
    after SIGHUP its password is gone too, so reconnecting is refused."""
    with clients() as made:
        device_b = _login(made, central, "dev-b", "dev-b-revoked")
        device_b.paho.reconnect_delay_set(30, 30)
        passwords = PasswordFile(central.etc / "passwd")
        with control_session("127.0.0.1", central.port, "admin", central.secrets["admin"]) as c:
            revoke(passwords, "dev-b", c)
        passwords.save()
        device_b.wait("disconnect")
        central.reload()
        made.append(again := Client("dev-b-again").login("dev-b", central.secrets["dev-b"]))
        assert again.outcome(central.port) == "refused: Not authorized"
        assert _login(made, central, "dev-a", "dev-a-still").paho.is_connected()


def test_device_added_to_a_running_broker_gets_exactly_its_rights(
    central: Broker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`iotstream broker add-devices --broker`: rights applied live, password on SIGHUP."""
    with clients() as made:
        worker = _login(made, central, "worker", "worker-new-device")
        worker.subscribe(shared_subscription("workers"))
        monkeypatch.setenv("IOTSTREAM_BROKER_ADMIN_PASSWORD", central.secrets["admin"])
        out = tmp_path / "new.csv"
        argv = ["broker", "add-devices", "dev-new", "--passwd", str(central.etc / "passwd")]
        assert (
            main([*argv, "--broker", f"127.0.0.1:{central.port}", "--secrets-out", str(out)]) == 0
        )
        central.secrets |= dict(line.split(",") for line in out.read_text().splitlines()[1:])
        central.reload()
        device = _login_when_reloaded(made, central, "dev-new")
        assert [rc.value for rc in device.subscribe(inference_topic("dev-new"))] == [1]
        assert [rc.value for rc in device.subscribe(WORKERS)] == [NOT_AUTHORIZED]
        assert device.publish(telemetry_topic("dev-new"), b"hello").value == 0  # type: ignore[union-attr]
        forged = device.publish(telemetry_topic("dev-a"), b"forged")
        assert forged is not None and forged.value == NOT_AUTHORIZED
        assert [bytes(m.payload) for m in worker.drain()] == [b"hello"]


def _login_when_reloaded(made: list[Client], central: Broker, user: str) -> Client:
    """Log in as ``user`` once the broker has re-read its password file (deadline 5 s)."""
    deadline = time.monotonic() + 5
    while True:
        client = Client(f"{user}-{time.monotonic_ns()}").login(user, central.secrets[user])
        made.append(client)
        outcome = client.outcome(central.port)
        if outcome == "ok":
            return client
        assert time.monotonic() < deadline, outcome
