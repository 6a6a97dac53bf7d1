"""Helpers for end-to-end tests: publish readings, read the streams back."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from inference_worker.settings import WorkerSettings
from iot_contract import (
    RECORD_FIELD,
    DeadLetter,
    JsonCodec,
    Prediction,
    Reading,
    RedisKeys,
    encode_reading,
    telemetry_topic,
)
from iot_mqtt.connection import MqttEndpoint, make_client
from tests.harness.services import Service

_CODEC = JsonCodec()


def publish(
    service: Service | str,
    messages: Iterable[tuple[str, bytes, str | None]],
    *,
    client_id: str,
    qos: int = 1,
    protocol: str = "5",
    **client_options: Any,
) -> int:
    """Publish ``(topic, payload, content_type)`` messages and wait until each is acknowledged.

    ``service`` is a test service or a broker URL; ``client_options`` go to
    :func:`~iot_mqtt.connection.make_client` (``username``, ``password``, ``ca_file``, ...).
    """
    endpoint = MqttEndpoint.from_url(service if isinstance(service, str) else service.url)
    client = make_client(
        endpoint, client_id, protocol="5" if protocol == "5" else "3.1.1", **client_options
    )
    client.max_inflight_messages_set(100)
    client.connect(endpoint.host, endpoint.port)
    client.loop_start()
    infos = []
    try:
        for topic, payload, content_type in messages:
            props = None
            if content_type and protocol == "5":
                props = Properties(PacketTypes.PUBLISH)
                props.ContentType = content_type
            infos.append(client.publish(topic, payload, qos=qos, properties=props))
        for info in infos:
            info.wait_for_publish(10)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()
    return len(infos)


def reading_messages(
    readings: Iterable[Reading], content_type: str | None = None
) -> list[tuple[str, bytes, str | None]]:
    """Readings as ``(topic, payload, content_type)`` tuples."""
    return [
        (telemetry_topic(r.device_id), encode_reading(r, content_type), content_type)
        for r in readings
    ]


def read_stream(client: redis.Redis, key: str) -> list[bytes]:
    """Every record's payload in a stream, in order."""
    entries: Any = client.xrange(key)
    return [fields[RECORD_FIELD] for _id, fields in entries]


def predictions(client: redis.Redis, keys: RedisKeys) -> list[Prediction]:
    """Every prediction in the stream."""
    return [_CODEC.decode(raw, Prediction) for raw in read_stream(client, keys.predictions)]


def deadletters(client: redis.Redis, keys: RedisKeys) -> list[DeadLetter]:
    """Every dead-letter record."""
    return [_CODEC.decode(raw, DeadLetter) for raw in read_stream(client, keys.deadletter)]


def wait_for(client: redis.Redis, key: str, count: int, timeout: float = 20.0) -> int:
    """Wait until stream ``key`` holds at least ``count`` entries; return its length."""
    deadline = time.monotonic() + timeout
    length = 0
    while time.monotonic() < deadline:
        length = int(client.xlen(key))
        if length >= count:
            return length
        time.sleep(0.05)
    return length


def settle(client: redis.Redis, key: str, quiet: float = 0.5, timeout: float = 20.0) -> int:
    """Wait until stream ``key`` stops growing for ``quiet`` seconds; return its length."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        length = int(client.xlen(key))
        if length != last:
            last, since = length, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return length
        time.sleep(0.05)
    return last


def worker_settings(
    mqtt_url: str, redis_url: str, keys: RedisKeys, unique: str, **overrides: Any
) -> WorkerSettings:
    """Settings for an in-process worker serving the ``lin`` test model, kept apart from
    other tests by ``unique`` (worker id, share group) and ``keys`` (Redis prefix)."""
    fields: dict[str, Any] = {
        "worker_id": f"w-{unique}",
        "mqtt_url": mqtt_url,
        "redis_url": redis_url,
        "redis_prefix": keys.prefix,
        "share_group": f"g{unique}",
        "max_batch": 8,
        "default_model": "lin",
    }
    return WorkerSettings(**(fields | overrides))


BUNDLED_MODELS = Path(__file__).resolve().parents[2] / "models"
"""The repository's models (fault-clf, fault-clf-large, vib-ae)."""


def bundled_worker_settings(
    mqtt_url: str, redis_url: str, keys: RedisKeys, unique: str, **overrides: Any
) -> WorkerSettings:
    """:func:`worker_settings` for a worker serving the bundled models (default route
    ``fault-clf``, the worker's default batch size)."""
    fields: dict[str, Any] = {
        "models_dir": BUNDLED_MODELS,
        "default_model": "fault-clf",
        "max_batch": WorkerSettings.model_fields["max_batch"].default,
    }
    return worker_settings(mqtt_url, redis_url, keys, unique, **(fields | overrides))
