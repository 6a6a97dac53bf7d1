"""The worker client's own socket reader, fed through a local socket pair (no broker)."""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from inference_worker.mqtt_source import MqttSource
from inference_worker.settings import WorkerSettings
from iot_mqtt.paho_client import WorkerClient
from iot_mqtt.rawpub import encode_varint
from iot_mqtt.wire import Publish, packet_size, split_packets

PINGRESP = b"\xd0\x00"


def publish(topic: str, payload: bytes, mid: int) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic.encode() + mid.to_bytes(2, "big") + payload
    return b"\x32" + encode_varint(len(body)) + body


@pytest.fixture
def wired() -> Iterator[tuple[WorkerClient, socket.socket, list[Publish]]]:
    """A 3.1.1 worker client reading one end of a socket pair; the test writes the other."""
    client = WorkerClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv311)
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    theirs.setblocking(False)
    client._sock = ours
    got: list[Publish] = []
    client.on_publishes = got.extend
    yield client, theirs, got
    client._sock = None
    ours.close()
    theirs.close()


def read_all(client: WorkerClient) -> None:
    while client._packet_read() == MQTTErrorCode.MQTT_ERR_SUCCESS:
        pass


def test_packets_in_random_pieces_come_out_whole_and_in_order(
    wired: tuple[WorkerClient, socket.socket, list[Publish]],
) -> None:
    client, theirs, got = wired
    rng = random.Random(7)
    expected = [
        Publish(f"devices/d{i}/telemetry", rng.randbytes(rng.choice([10, 300, 70_000])), None, i, 1)
        for i in range(1, 40)
    ]
    stream = PINGRESP + b"".join(publish(p.topic, p.payload, p.mid) for p in expected)
    client._ping_t = 123.0  # a PINGREQ is outstanding
    pos = 0
    while pos < len(stream):
        step = rng.randint(1, 50_000)
        theirs.sendall(stream[pos : pos + step])
        pos += step
        read_all(client)
    assert got == expected
    assert client._ping_t == 0, "the PINGRESP went to paho's handler"
    assert client._rest == ()


def test_a_large_packet_in_many_reads_is_joined_once(
    wired: tuple[WorkerClient, socket.socket, list[Publish]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Re-joining everything on every read would copy a 4 MB packet ~500 times."""
    client, theirs, got = wired
    scanned: list[int] = []

    def counting(data: bytes, v5: bool) -> tuple[list[object], int]:
        scanned.append(len(data))
        return split_packets(data, v5)  # type: ignore[return-value]

    monkeypatch.setattr("iot_mqtt.paho_client.split_packets", counting)
    big = publish("devices/big/telemetry", b"x" * 4_000_000, 9)
    for pos in range(0, len(big), 8192):
        theirs.sendall(big[pos : pos + 8192])
        read_all(client)
    assert [p.mid for p in got] == [9]
    assert len(got[0].payload) == 4_000_000
    assert sum(scanned) < 2 * len(big), f"{len(scanned)} splits over {sum(scanned)} bytes"


def test_what_came_before_the_end_of_the_connection_is_delivered(
    wired: tuple[WorkerClient, socket.socket, list[Publish]],
) -> None:
    client, theirs, got = wired
    first = publish("devices/a/telemetry", b"{}", 1)
    theirs.sendall(first + publish("devices/a/telemetry", b"{}", 2)[:5])
    theirs.shutdown(socket.SHUT_WR)
    assert client._packet_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert [p.mid for p in got] == [1]
    assert client._packet_read() == MQTTErrorCode.MQTT_ERR_CONN_LOST


@pytest.mark.parametrize(
    ("data", "size"),
    [(b"\x30", None), (b"\x30\x00", 2), (b"\x30\x80", None), (b"\x30\x80\x01", 131), (PINGRESP, 2)],
)
def test_packet_size(data: bytes, size: int | None) -> None:
    assert packet_size(data) == size


def test_what_paho_handles_reaches_the_source_buffer_too(tmp_path: Path) -> None:
    """A QoS 2 PUBLISH goes to paho's handlers (PUBREC, then delivery on PUBREL) and from
    its on_message into the same buffer as the fast path's messages."""
    source = MqttSource(
        WorkerSettings(
            mqtt_url="mqtt://127.0.0.1:1", mqtt_protocol="3.1.1", worker_id="t", models_dir=tmp_path
        )
    )
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    source.client._sock = ours
    try:
        body = b"\x00\x13devices/d/telemetry\x00\x05{}"
        theirs.sendall(publish("devices/d/telemetry", b"[]", 4))
        theirs.sendall(b"\x34" + encode_varint(len(body)) + body)  # QoS 2, packet id 5
        read_all(source.client)
        theirs.sendall(b"\x62\x02\x00\x05")  # PUBREL 5
        read_all(source.client)
        items = source.take(10, timeout=0)
        assert [(i.mid, i.qos, i.payload) for i in items] == [(4, 1, b"[]"), (5, 2, b"{}")]
    finally:
        source.client._sock = None
        source.client.close_sockets()
        ours.close()
        theirs.close()
