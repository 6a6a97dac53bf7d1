"""The worker's own MQTT reader over TLS (client certificate) and MQTT over WebSockets.

Against broker/production.conf on a real Mosquitto and a real Redis. Over these transports a
socket read returns one TLS record or one WebSocket frame's payload, not whatever the kernel
holds, so packets reach :class:`~iot_mqtt.paho_client.WorkerClient` in other pieces
than over plain TCP. Every reading must still give exactly one prediction, and a PUBLISH
longer than a TLS record (16 KiB) must be put back together from several reads.

Big payloads are tried over TLS only: Mosquitto 2.0.11 sends a WebSocket message of a few
tens of KB in pieces ~100 ms apart (a known broker limitation, eclipse/mosquitto#1390;
paho's own reader is just as slow), which would cost seconds and prove nothing about the
worker. paho's WebSocket wrapper hands over whole frames, so nothing is split there anyway.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from inference_worker.app import running_worker
from inference_worker.mqtt_source import MqttSource, MqttSourceError
from inference_worker.settings import WorkerSettings
from iot_contract import Reading, RedisKeys, RejectReason, encode_reading, telemetry_topic
from iot_mqtt.paho_client import WorkerClient
from iot_mqtt.wire import Publish
from iotstream.broker_tools.certs import issue_client
from tests.harness.models import linear_core
from tests.harness.pipeline import (
    deadletters,
    predictions,
    publish,
    settle,
    wait_for,
    worker_settings,
)
from tests.harness.services import Service
from tests.integration.broker.conftest import start_production
from tests.integration.broker.support import LIFETIME, Broker, Pki

pytestmark = pytest.mark.integration

Message = tuple[str, bytes]
"""(topic, payload)"""
TlsFiles = tuple[Path, Path, Path]
"""(ca, cert, key)"""


@pytest.fixture(scope="module")
def worker_tls(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A client certificate for the ``worker`` service account, from the test CA."""
    folder = tmp_path_factory.mktemp("worker-cert")
    cert, key = issue_client(pki.ca, "worker", LIFETIME).write(folder, "worker")
    return Path(pki.path("ca")), cert, key


@pytest.fixture(scope="module")
def roomy(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Broker]:
    """production.conf with ``max_packet_size`` raised to 128 KiB (``max_payload`` 127 KiB),
    so that one PUBLISH spans many 16 KiB TLS records."""
    with start_production(tmp_path_factory.mktemp("roomy"), pki, max_payload=130048) as b:
        yield b


@dataclass
class Reads:
    """What the worker's socket reads returned."""

    count: int = 0
    resumed: int = 0
    """Reads that began with part of a packet left over from the read before."""


def watch_reads(client: WorkerClient) -> Reads:
    """Observe the socket reads of a connected worker client (the bytes pass unchanged)."""
    reads = Reads()
    recv = client._sock_recv

    def recording(bufsize: int) -> bytes:
        pending = client.pending_bytes > 0
        chunk = recv(bufsize)
        reads.count += 1
        reads.resumed += pending
        return chunk

    client._sock_recv = recording  # type: ignore[method-assign]
    return reads


def padded(reading: Reading, size: int = 0) -> bytes:
    """``reading`` as JSON, widened to ``size`` bytes with insignificant whitespace (the
    contract refuses unknown fields, so whitespace is how a valid reading gets big)."""
    raw = encode_reading(reading)
    assert raw.endswith(b"}")
    return raw[:-1] + b" " * max(0, size - len(raw)) + b"}"


def readings(device: str, n: int, big: Sequence[int] = (), every: int = 7) -> list[Message]:
    """``n`` valid readings from ``device`` (seq 0..n-1); every ``every``-th is padded to the
    next size in ``big`` (cycling), the others are ~90 bytes."""
    out = []
    for seq in range(n):
        reading = Reading(device_id=device, seq=seq, ts=time.time(), features=[seq % 5, 1.0, 0.5])
        size = big[(seq // every) % len(big)] if big and seq % every == every - 1 else 0
        out.append((telemetry_topic(device), padded(reading, size)))
    return out


def publish_as(
    broker: Broker,
    device: str,
    messages: Sequence[Message],
    *,
    url: str,
    protocol: str = "5",
    tls: tuple[str, str, str] | None = None,
) -> None:
    """Publish at QoS 1 as ``device`` (its own account); wait for every ack."""
    ca, cert, key = (Path(p) for p in tls) if tls else (None, None, None)
    publish(
        url,
        [(topic, payload, None) for topic, payload in messages],
        client_id=f"{device}-{time.monotonic_ns()}",
        protocol=protocol,
        username=device,
        password=broker.secrets[device],
        ca_file=ca,
        cert_file=cert,
        key_file=key,
    )


def sent(device: str, messages: Sequence[Message]) -> set[tuple[str, int]]:
    return {(device, seq) for seq in range(len(messages))}


def transport_settings(
    broker: Broker,
    transport: str,
    redis_url: str,
    redis_keys: RedisKeys,
    unique: str,
    tls: TlsFiles,
    **overrides: object,
) -> WorkerSettings:
    """A worker logged in as ``worker``: over TLS with its certificate, or over WebSockets."""
    fields: dict[str, object] = {
        "mqtt_username": "worker",
        "mqtt_password": broker.secrets["worker"],
    }
    if transport == "ws":
        url = f"ws://127.0.0.1:{broker.ports['ws_port']}"
    else:
        url = f"mqtts://127.0.0.1:{broker.ports['tls_port']}"
        ca, cert, key = tls
        fields |= {"mqtt_ca_file": ca, "mqtt_cert_file": cert, "mqtt_key_file": key}
    return worker_settings(url, redis_url, redis_keys, unique, **(fields | overrides))


def assert_exactly_once(
    rclient: redis.Redis, redis_keys: RedisKeys, expected: set[tuple[str, int]]
) -> None:
    assert settle(rclient, redis_keys.predictions) == len(expected)
    got = [(p.device_id, p.seq) for p in predictions(rclient, redis_keys)]
    assert len(got) == len(set(got)), "a reading was stored twice"
    assert set(got) == expected, f"missing {sorted(expected - set(got))[:10]}"


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
@pytest.mark.parametrize("transport", ["tls", "ws"])
def test_worker_over_tls_or_websockets_stores_every_reading_once(
    central: Broker,
    pki: Pki,
    worker_tls: TlsFiles,
    redis_service: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
    transport: str,
    protocol: str,
) -> None:
    """Readings from two devices (dev-a over the worker's transport, dev-b on the plain
    listener), some padded to 4-15 KB (the production packet limit is 16 KiB), to a worker
    reading over TLS with its client certificate, or over WebSockets; a restart with the
    same id then gets nothing again (the batched PUBACKs went out)."""
    settings = transport_settings(
        central,
        transport,
        redis_service.url,
        redis_keys,
        unique,
        worker_tls,
        mqtt_protocol=protocol,
    )
    if transport == "tls":
        from_a = readings("dev-a", 120, big=(12_000, 4_000, 15_000))
        a_url, a_tls = f"mqtts://127.0.0.1:{central.ports['tls_port']}", pki.client("dev-a")
    else:  # Mosquitto is slow with big WebSocket messages (module docstring): fewer
        from_a = readings("dev-a", 60, big=(12_000, 15_000), every=5)
        a_url, a_tls = f"ws://127.0.0.1:{central.ports['ws_port']}", None
    from_b = readings("dev-b", 80)
    total = len(from_a) + len(from_b)
    with running_worker(settings, linear_core(settings.worker_id)) as (worker, _):
        assert isinstance(worker.source, MqttSource)
        reads = watch_reads(worker.source.client)
        publish_as(central, "dev-a", from_a, url=a_url, tls=a_tls)
        publish_as(central, "dev-b", from_b, url=f"mqtt://127.0.0.1:{central.port}")
        assert wait_for(rclient, redis_keys.predictions, total) == total
        assert worker.metrics.counter("received")._value.get() == total
    assert reads.count > 0
    assert_exactly_once(rclient, redis_keys, sent("dev-a", from_a) | sent("dev-b", from_b))
    assert deadletters(rclient, redis_keys) == []
    with running_worker(settings, linear_core(settings.worker_id)) as (again, _):
        time.sleep(0.5)
        assert again.metrics.counter("received")._value.get() == 0, (
            "acknowledged readings came back"
        )


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_packets_longer_than_a_tls_record_are_put_back_together(
    roomy: Broker,
    pki: Pki,
    worker_tls: TlsFiles,
    redis_service: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
    protocol: str,
) -> None:
    """Valid readings padded to 20-64 KB, 45 KB of garbage and a 70 KB payload among small
    readings: the big valid ones are stored, the garbage is dead-lettered (malformed; oversize
    beyond the worker's 64 KiB), and the small ones around them all flow."""
    settings = transport_settings(
        roomy, "tls", redis_service.url, redis_keys, unique, worker_tls, mqtt_protocol=protocol
    )
    topic = telemetry_topic("dev-a")
    good = readings("dev-a", 60, big=(20_000, 33_000, 47_000, 64_000), every=4)
    bad: list[Message] = [(topic, b"#" * 45_000), (topic, b"x" * 70_000)]
    messages = good[:20] + bad[:1] + good[20:40] + bad[1:] + good[40:]
    tls_url = f"mqtts://127.0.0.1:{roomy.ports['tls_port']}"
    with running_worker(settings, linear_core(settings.worker_id)) as (worker, _):
        assert isinstance(worker.source, MqttSource)
        worker.source.client.read_size = 8192  # every big packet spans several reads
        reads = watch_reads(worker.source.client)
        publish_as(roomy, "dev-a", messages, url=tls_url, tls=pki.client("dev-a"))
        assert wait_for(rclient, redis_keys.predictions, len(good)) == len(good)
        assert wait_for(rclient, redis_keys.deadletter, len(bad)) == len(bad)
    assert_exactly_once(rclient, redis_keys, sent("dev-a", good))
    dead = sorted(deadletters(rclient, redis_keys), key=lambda d: d.payload_size)
    assert [(d.reason, d.payload_size) for d in dead] == [
        (RejectReason.MALFORMED, 45_000),
        (RejectReason.OVERSIZE, 70_000),
    ]
    assert dead[0].payload == b"#" * len(dead[0].payload)
    # Guard: the big packets really came in pieces, or this test would prove nothing.
    assert reads.resumed > 0, reads


@pytest.mark.parametrize("transport", ["tls", "ws"])
def test_one_read_over_tls_or_websockets_takes_in_every_packet_waiting(
    central: Broker,
    worker_tls: TlsFiles,
    redis_service: Service,
    redis_keys: RedisKeys,
    unique: str,
    transport: str,
) -> None:
    """A TLS ``recv`` returns one record and paho's WebSocket wrapper one frame, and
    Mosquitto sends each packet in its own: a read must go on until the socket is empty, or
    each would bring one message (and the read interval would cap a worker at 1,000/s).

    The worker's buffer is never emptied while 400 readings arrive, so its network thread
    stops reading (backpressure) and the readings pile up in the socket; once the buffer
    is emptied they must come in a few deliveries, not one each."""
    settings = transport_settings(
        central,
        "tls" if transport == "tls" else "ws",
        redis_service.url,
        redis_keys,
        unique,
        worker_tls,
        queue_size=1,
    )
    deliveries: list[int] = []
    source = MqttSource(settings)
    deliver = source.client.on_publishes
    assert deliver is not None

    def counting(publishes: list[Publish]) -> None:
        deliveries.append(len(publishes))
        deliver(publishes)

    source.client.on_publishes = counting
    n = 400  # below the broker's max_inflight_messages (512): all sent before any ack
    try:
        source.start(timeout=10)
        publish_as(central, "dev-b", readings("dev-b", n), url=f"mqtt://127.0.0.1:{central.port}")
        time.sleep(0.5)  # let the broker push them out
        taken = 0
        deadline = time.monotonic() + 15
        while taken < n and time.monotonic() < deadline:
            taken += len(source.take(n, timeout=0.2))
        assert taken == n
        assert sum(deliveries) == n
        assert len(deliveries) <= n // 4, f"{len(deliveries)} deliveries: {deliveries[:20]}"
        source.unsubscribe()
    finally:
        source.close()


def test_worker_over_tls_without_client_certificate_fails_to_start(
    central: Broker,
    worker_tls: TlsFiles,
    redis_service: Service,
    redis_keys: RedisKeys,
    unique: str,
) -> None:
    """No hang: MqttSource.start gives up after its timeout with MqttSourceError saying
    why the connection failed (the TLS handshake), as the broker log does."""
    settings = transport_settings(
        central, "tls", redis_service.url, redis_keys, unique, worker_tls, mqtt_cert_file=None
    )
    source = MqttSource(settings)
    started = time.monotonic()
    try:
        with pytest.raises(MqttSourceError, match=r"no subscription to mqtts://.*SSL"):
            source.start(timeout=2.0)
    finally:
        source.close()
    assert time.monotonic() - started < 5
    assert "peer did not return a certificate" in central.process.log_tail(20)
