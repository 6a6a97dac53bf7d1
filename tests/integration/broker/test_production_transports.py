"""TLS (client certificates), MQTT over WebSockets and listener addresses of production.conf."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from iot_contract import telemetry_topic
from iotstream.broker_tools.connection import DeviceConnection
from iotstream.localservices import find_binary
from tests.integration.broker.conftest import start_production
from tests.integration.broker.support import Broker, Client, Pki, clients, listening_addresses

pytestmark = pytest.mark.integration


def _tls_outcome(central: Broker, pki: Pki, cert: str | None, user: str = "dev-a") -> str:
    with clients() as made:
        client = Client(f"tls-{cert}").login(user, central.secrets.get(user))
        made.append(client)
        ca, cert_path, key_path = pki.client(cert) if cert else (pki.path("ca"), None, None)
        client.tls(ca, cert_path, key_path)
        client.paho.reconnect_delay_set(30, 30)
        return client.outcome(central.ports["tls_port"])


def test_tls_with_valid_client_certificate_connects(central: Broker, pki: Pki) -> None:
    assert _tls_outcome(central, pki, "dev-a") == "ok"


@pytest.mark.parametrize(
    ("cert", "broker_says"),
    [
        ("dev-a-expired", "certificate verify failed"),
        ("dev-a-foreign", "certificate verify failed"),
        (None, "peer did not return a certificate"),
    ],
)
def test_tls_with_expired_foreign_or_no_client_certificate_fails(
    central: Broker, pki: Pki, cert: str | None, broker_says: str
) -> None:
    assert _tls_outcome(central, pki, cert) != "ok"
    assert broker_says in central.process.log_tail(6)


def test_tls_still_needs_the_password(central: Broker, pki: Pki) -> None:
    """use_identity_as_username false: certificate and password are both checked."""
    with clients() as made:
        made.append(client := Client("tls-nopw").login("dev-a", "not-the-secret"))
        client.tls(*pki.client("dev-a"))
        assert client.outcome(central.ports["tls_port"]) == "refused: Not authorized"


@pytest.fixture(scope="module")
def identity_broker(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Broker]:
    """production.conf with use_identity_as_username true."""
    root = tmp_path_factory.mktemp("identity")
    with start_production(root, pki, use_identity_as_username="true") as broker:
        yield broker


def test_identity_as_username_binds_certificate_cn_to_acl(
    identity_broker: Broker, pki: Pki
) -> None:
    """The CN (dev-a) is the username, whatever the client claims; no password is needed."""
    with clients() as made:
        made.append(admin := Client("admin").login("admin", identity_broker.secrets["admin"]))
        assert admin.outcome(identity_broker.port) == "ok"
        admin.subscribe("devices/#")
        made.append(device := Client("cn-device").login("dev-b", "ignored"))
        device.tls(*pki.client("dev-a"))
        assert device.outcome(identity_broker.ports["tls_port"]) == "ok"
        assert device.publish(telemetry_topic("dev-b"), b"x").value == 0x87  # type: ignore[union-attr]
        assert device.publish(telemetry_topic("dev-a"), b"y").value == 0  # type: ignore[union-attr]
        assert [m.topic for m in admin.drain()] == [telemetry_topic("dev-a")]


def test_websockets_listener_carries_mqtt(central: Broker) -> None:
    with clients() as made:
        made.append(admin := Client("ws-admin").login("admin", central.secrets["admin"]))
        assert admin.outcome(central.port) == "ok"
        admin.subscribe("devices/#")
        browser = Client("ws-dev-a", transport="websockets").login(
            "dev-a", central.secrets["dev-a"]
        )
        made.append(browser)
        assert browser.outcome(central.ports["ws_port"]) == "ok"
        assert browser.publish(telemetry_topic("dev-a"), b"over-ws").value == 0  # type: ignore[union-attr]
        assert [m.payload for m in admin.drain()] == [b"over-ws"]


def test_every_listener_binds_only_its_configured_address(central: Broker) -> None:
    for name in ("mqtt_port", "tls_port", "ws_port"):
        assert listening_addresses(central.ports[name]) == {"127.0.0.1"}, name


def test_connect_info_example_command_publishes(central: Broker, pki: Pki) -> None:
    """The mosquitto_pub line `iotstream broker connect-info` prints works as printed."""
    binary = find_binary("mosquitto_pub")
    assert binary, "mosquitto-clients is not installed"
    info = DeviceConnection(
        "dev-a",
        "localhost",
        central.ports["tls_port"],
        Path(pki.path("ca")),
        Path(pki.path("dev-a")),
        Path(pki.path("dev-a", "key")),
    )
    with clients() as made:
        made.append(admin := Client("cli-admin").login("admin", central.secrets["admin"]))
        assert admin.outcome(central.port) == "ok"
        admin.subscribe("devices/#")
        argv = info.mosquitto_pub_argv("hello", central.secrets["dev-a"])
        subprocess.run([binary, *argv[1:]], check=True, timeout=10, capture_output=True)
        assert [(m.topic, m.payload) for m in admin.drain()] == [
            (telemetry_topic("dev-a"), b"hello")
        ]
