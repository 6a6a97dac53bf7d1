"""The device simulator against a real Mosquitto."""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from device_sim.app import run
from device_sim.fleet import FleetStats
from device_sim.settings import SimSettings
from iot_contract import (
    STATUS_OFFLINE,
    STATUS_ONLINE,
    Reading,
    decode_reading,
    parse_device_topic,
)
from iot_models.sensors import FEATURE_NAMES, LABELS
from tests.harness.services import Service, Source

pytestmark = pytest.mark.integration


def _subscriber(service: Service, prefix: str) -> tuple[mqtt.Client, queue.Queue[mqtt.MQTTMessage]]:
    got: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_message = lambda _c, _u, msg: (
        got.put(msg) if msg.topic.split("/")[1].startswith(f"{prefix}-") else None
    )
    client.on_subscribe = lambda *_a: ready.set()
    client.connect(service.host, service.port)
    client.subscribe("devices/+/#", qos=1)
    client.loop_start()
    assert ready.wait(5)
    return client, got


def _drain(got: queue.Queue[mqtt.MQTTMessage], quiet: float = 0.5) -> list[mqtt.MQTTMessage]:
    out = []
    while True:
        try:
            out.append(got.get(timeout=quiet))
        except queue.Empty:
            return out


@pytest.mark.parametrize(
    ("protocol", "codec"), [("5", "json"), ("5", "msgpack"), ("3.1.1", "json")]
)
def test_devices_publish_counted_readings_with_birth_and_will(
    mosquitto: Service, unique: str, protocol: str, codec: str
) -> None:
    prefix = f"s{unique}"
    client, got = _subscriber(mosquitto, prefix)
    settings = SimSettings(
        mqtt_url=mosquitto.url,
        devices=4,
        rate=50,
        count=10,
        device_prefix=prefix,
        protocol=protocol,
        codec=codec,
    )
    stats = run(settings)
    messages = _drain(got)
    client.disconnect()
    client.loop_stop()

    assert (stats.published, stats.dropped) == (40, 0)
    assert (stats.acked, stats.status_acked) == (40, 8), "readings, then online/offline status"
    readings: dict[str, list[Reading]] = defaultdict(list)
    status: dict[str, list[bytes]] = defaultdict(list)
    for msg in messages:
        device_id, kind = parse_device_topic(msg.topic)
        if kind.value == "status":
            status[device_id].append(bytes(msg.payload))
        else:
            content_type = getattr(msg.properties, "ContentType", None)
            readings[device_id].append(
                decode_reading(msg.payload, content_type, topic_device_id=device_id)
            )
    assert sorted(readings) == [f"{prefix}-{i}" for i in range(4)]
    for device_id, items in readings.items():
        assert [r.seq for r in items] == list(range(10)), device_id
        assert all(len(r.features) == len(FEATURE_NAMES) for r in items)
        assert all(r.label in LABELS for r in items)
        assert status[device_id] == [STATUS_ONLINE, STATUS_OFFLINE]


def test_same_seed_gives_same_readings(mosquitto: Service, unique: str) -> None:
    runs = []
    for attempt in range(2):
        prefix = f"r{unique}{attempt}"
        client, got = _subscriber(mosquitto, prefix)
        run(
            SimSettings(
                mqtt_url=mosquitto.url, devices=2, rate=100, count=5, device_prefix=prefix, seed=11
            )
        )
        msgs = [m for m in _drain(got, 0.3) if m.topic.endswith("telemetry")]
        client.disconnect()
        client.loop_stop()
        runs.append(
            sorted(
                (r.device_id.split("-")[-1], r.seq, tuple(r.features), r.label)
                for r in (decode_reading(m.payload) for m in msgs)
            )
        )
    assert runs[0] == runs[1]
    assert len(runs[0]) == 10


def test_load_mode_multiplexes_devices_over_few_connections(
    mosquitto: Service, unique: str
) -> None:
    prefix = f"l{unique}"
    client, got = _subscriber(mosquitto, prefix)
    started = time.monotonic()
    stats = run(
        SimSettings(
            mqtt_url=mosquitto.url,
            devices=200,
            rate=20,
            count=5,
            mode="load",
            connections=3,
            device_prefix=prefix,
        )
    )
    elapsed = time.monotonic() - started
    msgs = _drain(got)
    client.disconnect()
    client.loop_stop()
    assert stats.connections == 3
    assert (stats.published, stats.acked) == (1000, 1000)
    assert len({m.topic for m in msgs}) == 200
    assert len(msgs) == 1000
    assert elapsed < 10


@pytest.mark.parametrize(
    ("load_client", "protocol", "unacked_allowed"),
    [
        ("paho", "5", 2 * 20),  # paho resends its own session's in-flight messages
        ("raw", "3.1.1", 0),  # every unacknowledged packet is resent with DUP
    ],
)
def test_simulator_keeps_publishing_across_a_broker_restart(
    unique: str, tmp_path, load_client: str, protocol: str, unacked_allowed: int
) -> None:
    from iotstream.localservices import MosquittoProcess

    with MosquittoProcess(tmp_path / "b") as broker:
        stop = threading.Event()
        settings = SimSettings(
            mqtt_url=broker.url,
            devices=2,
            rate=20,
            device_prefix=f"x{unique}",
            mode="load",
            connections=1,
            load_client=load_client,
            protocol=protocol,
        )
        result: list[FleetStats] = []
        thread = threading.Thread(target=lambda: result.append(run(settings, stop)))
        thread.start()
        time.sleep(1.0)
        broker.restart()
        time.sleep(3.0)
        stop.set()
        thread.join(15)
    stats = result[0]
    assert stats.reconnects >= 1
    assert stats.acked >= stats.published - unacked_allowed, (
        "resent after reconnect, acked by the new broker"
    )


def test_devices_can_publish_over_mqtt_websockets(tmp_path, unique: str) -> None:
    from iotstream.localservices import MosquittoProcess, free_port

    ws_port = free_port()
    config = (
        MosquittoProcess.default_config() + f"listener {ws_port} 127.0.0.1\nprotocol websockets\n"
    )
    with MosquittoProcess(tmp_path / "ws", config=config) as broker:
        service = Service(broker.url, Source.LOCAL, broker)
        client, got = _subscriber(service, f"w{unique}")
        stats = run(
            SimSettings(
                mqtt_url=f"ws://127.0.0.1:{ws_port}",
                devices=2,
                rate=50,
                count=5,
                device_prefix=f"w{unique}",
            )
        )
        msgs = [m for m in _drain(got) if m.topic.endswith("telemetry")]
        client.disconnect()
        client.loop_stop()
    assert (stats.published, stats.acked, stats.status_acked) == (10, 10, 4)
    assert len(msgs) == 10


def test_devices_can_publish_over_tls_with_client_certificates(tmp_path, unique: str) -> None:
    import datetime as dt

    from iotstream.broker_tools.certs import create_ca, issue_client, issue_server
    from iotstream.localservices import MosquittoProcess, free_port

    day = dt.timedelta(days=1)
    ca = create_ca("test-ca", day)
    ca_crt, _ = ca.write(tmp_path / "pki", "ca")
    srv_crt, srv_key = issue_server(ca, ["127.0.0.1"], day).write(tmp_path / "pki", "server")
    cli_crt, cli_key = issue_client(ca, "sim-loader", day).write(tmp_path / "pki", "client")
    tls_port = free_port()
    config = MosquittoProcess.default_config() + (
        f"listener {tls_port} 127.0.0.1\n"
        f"cafile {ca_crt}\ncertfile {srv_crt}\nkeyfile {srv_key}\n"
        "require_certificate true\n"
    )
    with MosquittoProcess(tmp_path / "tls", config=config) as broker:
        service = Service(broker.url, Source.LOCAL, broker)
        client, got = _subscriber(service, f"t{unique}")
        stats = run(
            SimSettings(
                mqtt_url=f"mqtts://127.0.0.1:{tls_port}",
                ca_file=ca_crt,
                cert_file=cli_crt,
                key_file=cli_key,
                devices=2,
                rate=50,
                count=5,
                mode="load",
                connections=1,
                device_prefix=f"t{unique}",
            )
        )
        msgs = [m for m in _drain(got) if m.topic.endswith("telemetry")]
        client.disconnect()
        client.loop_stop()
    assert (stats.published, stats.acked, stats.reconnects) == (10, 10, 0)
    assert len(msgs) == 10


def test_raw_load_client_publishes_every_reading_once(mosquitto: Service, unique: str) -> None:
    prefix = f"q{unique}"
    client, got = _subscriber(mosquitto, prefix)
    stats = run(
        SimSettings(
            mqtt_url=mosquitto.url,
            devices=300,
            rate=20,
            count=5,
            mode="load",
            connections=2,
            load_client="raw",
            protocol="3.1.1",
            device_prefix=prefix,
            codec="msgpack",
        )
    )
    msgs = [m for m in _drain(got) if m.topic.endswith("telemetry")]
    client.disconnect()
    client.loop_stop()
    assert (stats.published, stats.acked, stats.dropped) == (1500, 1500, 0)
    seen = sorted((m.topic, decode_reading(m.payload).seq) for m in msgs)
    assert len(seen) == 1500
    assert len(set(seen)) == 1500


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mode": "devices"}, "mode must be load"),
        ({"mqtt_url": "mqtts://h:8883"}, "plain mqtt://"),
        ({"protocol": "5"}, "protocol must be 3.1.1"),
    ],
)
def test_raw_load_client_limits_are_explained(changes: dict[str, str], message: str) -> None:
    from pydantic import ValidationError

    fields = {"mode": "load", "load_client": "raw", "protocol": "3.1.1"} | changes
    with pytest.raises(ValidationError, match=message):
        SimSettings(**fields)  # type: ignore[arg-type]


def test_readings_the_broker_never_acknowledged_are_reported_at_exit(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No broker: the readings stay queued in the client, and the last words say how many."""
    from iotstream.localservices import free_port

    settings = SimSettings(
        mqtt_url=f"mqtt://127.0.0.1:{free_port()}", devices=2, rate=10, duration=0.5
    )
    with caplog.at_level("WARNING", logger="device_sim.fleet"):
        stats = run(settings)
    assert stats.published > 0 and stats.acked == 0
    assert f"stopped with {stats.published} readings the broker never acknowledged" in caplog.text
