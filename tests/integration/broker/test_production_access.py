"""broker/production.conf + broker/acl on a real Mosquitto: who may connect, read and write."""

from __future__ import annotations

import pytest

from iot_contract import inference_topic, shared_subscription, status_topic, telemetry_topic
from iotstream.broker_tools import PasswordFile
from iotstream.broker_tools.accounts import revoke, rotate
from tests.integration.broker.support import Broker, Client, clients

pytestmark = pytest.mark.integration

NOT_AUTHORIZED = 0x87
PACKET_TOO_LARGE = 0x95


def _login(made: list[Client], central: Broker, user: str, client_id: str) -> Client:
    client = Client(client_id).login(user, central.secrets[user])
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


def test_device_wildcard_subscription_reads_only_its_own_inference(central: Broker) -> None:
    """2.0.11 grants the SUBACK for '#', then filters every delivery through the read ACL."""
    with clients() as made:
        device_a = _login(made, central, "dev-a", "dev-a-wild")
        granted = device_a.subscribe("#")
        device_a.subscribe("devices/+/inference")
        device_b = _login(made, central, "dev-b", "dev-b")
        worker = _login(made, central, "worker", "worker-w")
        device_b.publish(telemetry_topic("dev-b"), b"b-telemetry")
        device_b.publish(status_topic("dev-b"), b"online")
        worker.publish(inference_topic("dev-b"), b"for-b")
        worker.publish(inference_topic("dev-a"), b"for-a")
        got = {(m.topic, bytes(m.payload)) for m in device_a.drain()}
        assert got == {(inference_topic("dev-a"), b"for-a")}
        assert [rc.value for rc in granted] == [1]  # documented: not refused, just empty


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


def test_oversize_message_never_reaches_worker_and_publisher_gets_0x95(central: Broker) -> None:
    """max_packet_size: announced in CONNACK; a bigger PUBLISH is dropped, sender disconnected."""
    with clients() as made:
        worker = _login(made, central, "worker", "worker-size")
        worker.subscribe(shared_subscription("size"))
        device_a = _login(made, central, "dev-a", "dev-a-big")
        assert device_a.connack_properties.MaximumPacketSize == 16384
        assert device_a.publish(telemetry_topic("dev-a"), b"x" * 16_000).value == 0  # type: ignore[union-attr]
        assert [len(m.payload) for m in worker.drain()] == [16_000]
        device_a.paho.reconnect_delay_set(30, 30)  # keep paho from resending it at once
        big = device_a.paho.publish(telemetry_topic("dev-a"), b"x" * 17_000, qos=1)
        reason = device_a.wait("disconnect")
        assert reason.value == PACKET_TOO_LARGE
        assert not big.is_published()
        assert worker.drain(0.5) == []


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


def test_revoked_device_is_cut_off_on_reload(central: Broker) -> None:
    """revoke + SIGHUP: the open connection is closed and a new one refused."""
    with clients() as made:
        device_b = _login(made, central, "dev-b", "dev-b-revoked")
        device_b.paho.reconnect_delay_set(30, 30)
        passwords = PasswordFile(central.etc / "passwd")
        revoke(passwords, "dev-b")
        passwords.save()
        central.reload()
        device_b.wait("disconnect")
        made.append(again := Client("dev-b-again").login("dev-b", central.secrets["dev-b"]))
        assert again.outcome(central.port) == "refused: Not authorized"
        assert _login(made, central, "dev-a", "dev-a-still").paho.is_connected()
