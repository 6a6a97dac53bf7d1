"""Persistence across a broker restart, and the edge bridge's store-and-forward."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from iot_contract import (
    MSGPACK_CONTENT_TYPE,
    inference_topic,
    shared_subscription,
    status_topic,
    telemetry_topic,
)
from iotstream.broker_tools import Profile
from tests.integration.broker.conftest import start_production
from tests.integration.broker.support import (
    Broker,
    Client,
    Pki,
    clients,
    run_broker,
    write_accounts,
)

pytestmark = pytest.mark.integration

SESSION_EXPIRY = 300


@pytest.fixture
def fresh_central(tmp_path: Path, pki: Pki) -> Iterator[Broker]:
    """A production broker of this test's own (the test restarts it)."""
    with start_production(tmp_path / "central", pki) as broker:
        yield broker


def _worker(broker: Broker, client_id: str) -> Client:
    """A worker with a persistent session: stable id, clean start off, session expiry."""
    worker = Client(client_id, clean_start=False).login("worker", broker.secrets["worker"])
    worker.paho.reconnect_delay_set(1, 1)
    return worker


def _seqs(messages: Sequence[mqtt.MQTTMessage]) -> list[int]:
    return sorted(int(m.payload) for m in messages)


def test_persistent_worker_session_survives_sigterm_restart(fresh_central: Broker) -> None:
    broker = fresh_central
    with clients() as made:
        made.append(worker := _worker(broker, "worker-0"))
        worker.connect(broker.port, session_expiry=SESSION_EXPIRY)
        worker.wait("connect")
        worker.subscribe(shared_subscription("workers"))
        worker.close()  # gone, session kept: its share of telemetry queues at the broker

        made.append(device := Client("dev-a").login("dev-a", broker.secrets["dev-a"]))
        assert device.outcome(broker.port) == "ok"
        for seq in range(50):
            assert device.publish(telemetry_topic("dev-a"), str(seq).encode()).value == 0  # type: ignore[union-attr]
        device.close()

        broker.process.restart()  # SIGTERM: mosquitto saves its database on the way out

        made.append(back := _worker(broker, "worker-0"))
        back.connect(broker.port, session_expiry=SESSION_EXPIRY)
        _rc, flags, _props = back.wait("connect")
        assert flags.session_present
        assert _seqs(back.drain(1.0)) == list(range(50))


def test_restored_shared_subscription_is_dead_until_renewed(fresh_central: Broker) -> None:
    """Mosquitto 2.0.11: after a restart, a persistent session's *shared* subscription
    comes back (session present) but matches nothing until the client subscribes again;
    what is published in between reaches nobody. A plain subscription is fine. If this
    test starts failing, Mosquitto fixed it: update docs/broker.md."""
    broker = fresh_central
    with clients() as made:
        made.append(worker := _worker(broker, "worker-r"))
        worker.connect(broker.port, session_expiry=SESSION_EXPIRY)
        worker.wait("connect")
        worker.subscribe(shared_subscription("workers"))
        worker.subscribe("devices/+/status")
        broker.process.restart()
        _rc, flags, _props = worker.wait("connect", 10)
        assert flags.session_present
        made.append(device := Client("dev-a").login("dev-a", broker.secrets["dev-a"]))
        assert device.outcome(broker.port) == "ok"
        device.publish(telemetry_topic("dev-a"), b"0")
        device.publish(status_topic("dev-a"), b"online")
        assert [m.topic for m in worker.drain(0.5)] == [status_topic("dev-a")]
        worker.subscribe(shared_subscription("workers"))
        device.publish(telemetry_topic("dev-a"), b"1")
        assert [m.payload for m in worker.drain(0.5)] == [b"1"]  # b"0" is gone for good


def test_reload_after_restart_keeps_offline_sessions_subscriptions(
    fresh_central: Broker,
) -> None:
    """With an acl_file, Mosquitto 2.0.11 lost the messages for offline persistent sessions
    restored after a restart once a SIGHUP came (eclipse-mosquitto/mosquitto#2934: the read
    check at delivery failed for them). With the rights in the dynamic security plugin, which
    looks clients up by username, they queue and arrive on reconnect."""
    broker = fresh_central
    with clients() as made:
        made.append(sleeper := _worker(broker, "sleeper"))
        sleeper.connect(broker.port, session_expiry=SESSION_EXPIRY)
        sleeper.wait("connect")
        sleeper.subscribe("devices/+/status")
        sleeper.close()
        broker.process.restart()
        made.append(device := Client("dev-a").login("dev-a", broker.secrets["dev-a"]))
        assert device.outcome(broker.port) == "ok"
        broker.reload()  # e.g. after `iotstream broker revoke`
        time.sleep(0.3)
        device.publish(status_topic("dev-a"), b"kept")
        made.append(back := _worker(broker, "sleeper"))
        back.connect(broker.port, session_expiry=SESSION_EXPIRY)
        _rc, flags, _props = back.wait("connect")
        assert flags.session_present
        assert [bytes(m.payload) for m in back.drain(0.5)] == [b"kept"]


@contextlib.contextmanager
def _site(root: Path, pki: Pki, protocol: str) -> Iterator[tuple[Broker, Broker, str]]:
    """A central production broker and an edge broker bridged to its TLS listener."""
    with start_production(root / "central", pki) as central:
        edge_secrets = write_accounts(root / "edge" / "etc")
        values: dict[str, str | int] = {
            "central_host": "127.0.0.1",
            "central_port": central.ports["tls_port"],
            "bridge_password": central.secrets["bridge-site1"],
            "bridge_protocol_version": protocol,
            "bridge_restart_timeout": "1",
            "bridge_cafile": pki.path("ca"),
            "bridge_certfile": pki.path("bridge-site1"),
            "bridge_keyfile": pki.path("bridge-site1", "key"),
        }
        with run_broker(Profile.EDGE, root / "edge", values, edge_secrets) as edge:
            yield central, edge, protocol


@pytest.fixture(params=["mqttv311", "mqttv50"])
def site(
    request: pytest.FixtureRequest, tmp_path: Path, pki: Pki
) -> Iterator[tuple[Broker, Broker, str]]:
    """A bridged pair, once per bridge protocol version."""
    with _site(tmp_path, pki, request.param) as pair:
        yield pair


@pytest.fixture
def site_v5(tmp_path: Path, pki: Pki) -> Iterator[tuple[Broker, Broker, str]]:
    """A bridged pair with the default (v5) bridge."""
    with _site(tmp_path, pki, "mqttv50") as pair:
        yield pair


def _wait_bridge(edge: Broker, made: list[Client], up: bool, timeout: float = 15) -> None:
    """Wait for the edge's retained bridge state notification to say ``up``."""
    monitor = Client(f"monitor-{time.monotonic_ns()}").login("admin", edge.secrets["admin"])
    made.append(monitor)
    assert monitor.outcome(edge.port) == "ok"
    monitor.subscribe("$SYS/broker/connection/bridge-site1/state")
    want = b"1" if up else b"0"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(m.payload == want for m in monitor.drain(0.2)):
            return
    raise AssertionError(f"bridge not {'up' if up else 'down'} after {timeout}s")


def test_edge_bridge_forwards_and_stores_while_central_is_down(
    site: tuple[Broker, Broker, str],
) -> None:
    central, edge, protocol = site
    with clients() as made:
        made.append(worker := _worker(central, "worker-central"))
        worker.connect(central.port, session_expiry=SESSION_EXPIRY)
        worker.wait("connect")
        worker.keep_subscribed(shared_subscription("workers"))
        _wait_bridge(edge, made, up=True)

        made.append(
            device := Client("dev-a", clean_start=False).login("dev-a", edge.secrets["dev-a"])
        )
        assert device.outcome(edge.port) == "ok"
        device.subscribe(inference_topic("dev-a"))
        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = MSGPACK_CONTENT_TYPE
        for seq in range(5):
            device.publish(telemetry_topic("dev-a"), str(seq).encode(), properties=props)
        first = worker.drain(1.0)
        assert _seqs(first) == list(range(5))
        # The contract picks the codec by the v5 content type: only a v5 bridge carries it.
        carried = {getattr(m.properties, "ContentType", None) for m in first}
        assert carried == ({MSGPACK_CONTENT_TYPE} if protocol == "mqttv50" else {None})
        worker.publish(inference_topic("dev-a"), b"prediction")
        assert [m.payload for m in device.drain(1.0)] == [b"prediction"]

        central.process.stop()
        _wait_bridge(edge, made, up=False)
        for seq in range(5, 25):  # the edge accepts (PUBACK) and queues for the bridge
            assert device.publish(telemetry_topic("dev-a"), str(seq).encode()).value == 0  # type: ignore[union-attr]
        central.process.start()  # the worker reconnects and renews its subscription; the
        # bridge reconnects (its backoff) and sends what the edge queued
        got: list[int] = []
        deadline = time.monotonic() + 20
        while len(got) < 20 and time.monotonic() < deadline:
            got += _seqs(worker.drain(0.5))
        assert sorted(got) == list(range(5, 25))


def test_edge_queue_survives_an_edge_restart(site_v5: tuple[Broker, Broker, str]) -> None:
    """Uplink down, then the edge broker itself restarts (SIGTERM): the queue is persisted."""
    central, edge, _protocol = site_v5
    with clients() as made:
        made.append(worker := _worker(central, "worker-edge-restart"))
        worker.connect(central.port, session_expiry=SESSION_EXPIRY)
        worker.wait("connect")
        worker.keep_subscribed(shared_subscription("workers"))
        _wait_bridge(edge, made, up=True)
        central.process.stop()
        made.append(device := Client("dev-a").login("dev-a", edge.secrets["dev-a"]))
        assert device.outcome(edge.port) == "ok"
        for seq in range(10):
            assert device.publish(telemetry_topic("dev-a"), str(seq).encode()).value == 0  # type: ignore[union-attr]
        device.close()
        edge.process.stop()  # the edge restarts during the outage (SIGTERM: persisted)
        central.process.start()
        # the worker renews its $share subscription before the edge's bridge can deliver: a
        # restored one matches nothing until then (docs/broker.md, the loss window), and a
        # just-started edge's bridge connects at once (CI: it beat the worker by a second)
        worker.wait("connect", timeout=15)
        worker.wait("suback")
        edge.process.start()
        got: list[int] = []
        deadline = time.monotonic() + 20
        while len(got) < 10 and time.monotonic() < deadline:
            got += _seqs(worker.drain(0.5))
        assert sorted(got) == list(range(10))
