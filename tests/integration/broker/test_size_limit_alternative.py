"""Why production.conf uses max_packet_size and not message_size_limit (Mosquitto 2.0.11).

With message_size_limit the broker drops an oversized message but answers the v5 publisher
with PUBACK reason 0x95, which MQTT v5 does not allow in a PUBACK; paho-mqtt 2.2 then calls
the packet malformed and drops its own connection. If Mosquitto or paho changes this, the
test fails: revisit the choice in docs/broker.md.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

import pytest

from iot_contract import shared_subscription, telemetry_topic
from iotstream.broker_tools import Profile
from tests.integration.broker.support import (
    Broker,
    Client,
    Pki,
    clients,
    production_values,
    run_broker,
    write_accounts,
)

pytestmark = pytest.mark.integration

PROTOCOL_ERROR = 0x82


def _field(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    length, encoded = len(body), b""
    while True:
        digit, length = length % 128, length // 128
        encoded += bytes([digit | (0x80 if length else 0)])
        if not length:
            return bytes([first]) + encoded + body


def _raw_v5_puback(broker: Broker, payload_size: int) -> bytes:
    """CONNECT (v5, user dev-a), PUBLISH QoS 1 with packet id 7; return the broker's answer."""
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as sock:
        header = _field(b"MQTT") + bytes([5, 0xC2]) + struct.pack("!H", 30) + b"\x00"
        login = _field(b"raw") + _field(b"dev-a") + _field(broker.secrets["dev-a"].encode())
        sock.sendall(_packet(0x10, header + login))
        assert sock.recv(64)[:1] == b"\x20"  # CONNACK
        body = _field(telemetry_topic("dev-a").encode()) + struct.pack("!H", 7) + b"\x00"
        sock.sendall(_packet(0x32, body + b"x" * payload_size))
        return sock.recv(64)


def test_message_size_limit_answers_a_puback_paho_rejects(tmp_path: Path, pki: Pki) -> None:
    secrets = write_accounts(tmp_path / "etc")
    with (
        run_broker(
            Profile.PRODUCTION,
            tmp_path,
            production_values(pki),
            secrets,
            extra_config="\nmessage_size_limit 1000\n",
        ) as broker,
        clients() as made,
    ):
        made.append(worker := Client("w").login("worker", secrets["worker"]))
        assert worker.outcome(broker.port) == "ok"
        worker.subscribe(shared_subscription("workers"))

        # PUBACK, packet id 7, reason 0x95 "packet too large"; the connection stays up
        assert _raw_v5_puback(broker, 2000) == bytes([0x40, 3, 0, 7, 0x95])

        made.append(device := Client("dev-a").login("dev-a", secrets["dev-a"]))
        assert device.outcome(broker.port) == "ok"
        device.paho.reconnect_delay_set(30, 30)
        device.paho.publish(telemetry_topic("dev-a"), b"x" * 2000, qos=1)
        assert device.wait("disconnect").value == PROTOCOL_ERROR  # paho: "malformed packet"
        assert worker.drain(0.5) == []
