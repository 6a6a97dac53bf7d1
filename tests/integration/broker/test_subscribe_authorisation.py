"""Subscriptions are authorised when they are made (issue #12, point 4).

With an ``acl_file``, Mosquitto 2.0.11 grants every SUBSCRIBE and checks reads only at
delivery. A device that joined the workers' shared subscription took its round-robin turn
of other devices' readings, and each of its turns was dropped at the read check: 50 of 100
readings lost, all PUBACKed to their sender, and more lost for as long as its session lived.
The dynamic security plugin refuses such a SUBSCRIBE (SUBACK 0x87), so nothing is lost.
"""

from __future__ import annotations

import queue
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from iot_contract import inference_topic, shared_subscription, status_topic, telemetry_topic
from tests.integration.broker.support import Broker, Client, clients

pytestmark = pytest.mark.integration

GRANTED_QOS1 = 1
NOT_AUTHORIZED = 0x87  # MQTT v5 SUBACK reason
V311_FAILURE = 0x80  # MQTT 3.1.1 SUBACK return code
WORKERS = shared_subscription("workers")

FOREIGN_FILTERS = [
    WORKERS,
    "$share/anything/#",
    "$share/anything/devices/dev-a/telemetry",  # even its own topic, through a share group
    telemetry_topic("dev-b"),
    inference_topic("dev-b"),
    status_topic("dev-b"),
    "devices/+/inference",
    "devices/dev-a/#",
    "#",
    "$SYS/#",
]


def _login(
    made: list[Client],
    broker: Broker,
    user: str,
    client_id: str,
    protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
) -> Client:
    client = Client(client_id, protocol=protocol).login(user, broker.secrets[user])
    made.append(client)
    assert client.outcome(broker.port) == "ok"
    return client


def _collect(client: Client, count: int, timeout: float = 10.0) -> list[mqtt.MQTTMessage]:
    """Messages until ``count`` have arrived or ``timeout`` passed, then any stragglers."""
    got: list[mqtt.MQTTMessage] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and (left := deadline - time.monotonic()) > 0:
        try:
            got.append(client.messages.get(timeout=left))
        except queue.Empty:
            break
    return got + client.drain(0.3)


@pytest.mark.parametrize("topic", FOREIGN_FILTERS)
def test_device_subscription_outside_its_own_topics_is_refused(central: Broker, topic: str) -> None:
    with clients() as made:
        device = _login(made, central, "dev-a", "dev-a-sub")
        (rc,) = device.subscribe(topic)
        assert rc.value == NOT_AUTHORIZED, rc


def test_device_subscribes_to_its_own_inference_topic(central: Broker) -> None:
    with clients() as made:
        device = _login(made, central, "dev-a", "dev-a-own")
        (rc,) = device.subscribe(inference_topic("dev-a"))
        assert rc.value == GRANTED_QOS1
        worker = _login(made, central, "worker", "worker-answer")
        worker.publish(inference_topic("dev-a"), b"for-a")
        worker.publish(inference_topic("dev-b"), b"for-b")
        assert [(m.topic, bytes(m.payload)) for m in _collect(device, 1)] == [
            (inference_topic("dev-a"), b"for-a")
        ]


def test_mqtt311_device_gets_the_failure_return_code(central: Broker) -> None:
    with clients() as made:
        device = _login(made, central, "dev-a", "dev-a-v311", protocol=MQTTProtocolVersion.MQTTv311)
        assert [rc.value for rc in device.subscribe(WORKERS)] == [V311_FAILURE]
        assert [rc.value for rc in device.subscribe(inference_topic("dev-a"))] == [GRANTED_QOS1]


def test_intruding_device_takes_no_share_of_the_workers_readings(central: Broker) -> None:
    """A persistent device session tries every foreign filter, stays connected, then leaves
    with its session kept: the worker still gets all 100 readings of another device."""
    with clients() as made:
        worker = _login(made, central, "worker", "worker-zero-loss")
        assert [rc.value for rc in worker.subscribe(WORKERS)] == [GRANTED_QOS1]
        intruder = Client("dev-a-intruder", clean_start=False).login(
            "dev-a", central.secrets["dev-a"]
        )
        made.append(intruder)
        intruder.connect(central.port, session_expiry=3600)
        assert not intruder.wait("connect")[0].is_failure
        refused = [intruder.subscribe(topic)[0].value for topic in FOREIGN_FILTERS]
        assert refused == [NOT_AUTHORIZED] * len(FOREIGN_FILTERS)
        device_b = _login(made, central, "dev-b", "dev-b-readings")
        for seq in range(50):
            rc = device_b.publish(telemetry_topic("dev-b"), f"{seq}".encode())
            assert rc is not None and not rc.is_failure
        intruder.paho.disconnect()  # its session (and any subscription in it) lives on
        intruder.wait("disconnect")
        for seq in range(50, 100):
            rc = device_b.publish(telemetry_topic("dev-b"), f"{seq}".encode())
            assert rc is not None and not rc.is_failure
        got = sorted(int(m.payload) for m in _collect(worker, 100))
        assert got == list(range(100))
