"""The test harness's services are real: MQTT v5 shared subscriptions, Redis streams."""

from __future__ import annotations

import queue
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from iot_contract import (
    MSGPACK_CONTENT_TYPE,
    RECORD_FIELD,
    Reading,
    RedisKeys,
    decode_reading,
    encode_reading,
    parse_device_topic,
    shared_subscription,
    telemetry_topic,
)
from iotstream.localservices import RedisProcess
from tests.harness.services import Service, Source

pytestmark = pytest.mark.integration


def _client(service: Service, client_id: str) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.connect(service.host, service.port)
    client.loop_start()
    return client


def test_mqtt_v5_shared_subscription_round_trip(mosquitto: Service, unique: str) -> None:
    received: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    subscribed = queue.Queue[int]()
    group = f"g{unique}"
    members = [_client(mosquitto, f"sub-{unique}-{i}") for i in range(2)]
    for member in members:
        member.on_message = lambda _c, _u, msg: received.put(msg)
        member.on_subscribe = lambda _c, _u, mid, _rc, _p: subscribed.put(mid)
        member.subscribe(shared_subscription(group), qos=1)
    for _ in members:
        subscribed.get(timeout=5)

    publisher = _client(mosquitto, f"pub-{unique}")
    props = Properties(PacketTypes.PUBLISH)
    props.ContentType = MSGPACK_CONTENT_TYPE
    sent = [
        Reading(device_id=f"d{unique}", seq=i, ts=time.time(), features=[i, 1.5]) for i in range(10)
    ]
    for reading in sent:
        info = publisher.publish(
            telemetry_topic(reading.device_id),
            encode_reading(reading, MSGPACK_CONTENT_TYPE),
            qos=1,
            properties=props,
        )
        info.wait_for_publish(5)

    got = [received.get(timeout=5) for _ in sent]
    time.sleep(0.2)
    assert received.empty(), "each message goes to exactly one member of the share group"
    decoded = sorted(
        (
            decode_reading(
                bytes(m.payload),
                m.properties.ContentType,  # type: ignore[union-attr]
                topic_device_id=parse_device_topic(m.topic)[0],
            )
            for m in got
        ),
        key=lambda r: r.seq,
    )
    assert decoded == sent
    for client in [*members, publisher]:
        client.disconnect()
        client.loop_stop()


def test_redis_stream_round_trip(redis_service: Service, redis_keys: RedisKeys) -> None:
    client = redis.Redis.from_url(redis_service.url)
    with client.pipeline(transaction=False) as pipe:
        for i in range(5):
            pipe.xadd(redis_keys.predictions, {RECORD_FIELD: f"item-{i}".encode()})
        ids: list[Any] = pipe.execute()
    entries: Any = client.xread({redis_keys.predictions: "0-0"}, block=1000)
    assert entries
    ((_stream, records),) = entries
    assert [rid for rid, _ in records] == ids
    assert [fields[RECORD_FIELD] for _, fields in records] == [
        f"item-{i}".encode() for i in range(5)
    ]
    last = ids[2]
    tail: Any = client.xread({redis_keys.predictions: last})
    assert [rid for rid, _ in tail[0][1]] == ids[3:]
    client.close()


def test_local_redis_keeps_appendonly_data_across_kill(tmp_path) -> None:
    """A local process restarts on the same port; AOF keeps what was written before kill -9."""
    with RedisProcess(tmp_path / "r", appendonly=True) as server:
        client = redis.Redis.from_url(server.url)
        client.xadd("s", {b"m": b"1"})
        time.sleep(1.2)  # appendfsync everysec
        port = server.port
        server.restart(hard=True)
        assert server.port == port
        assert client.xlen("s") == 1
        client.close()


def test_harness_says_where_services_came_from(mosquitto: Service, redis_service: Service) -> None:
    assert mosquitto.url.startswith("mqtt://")
    assert redis_service.url.startswith("redis://")
    if mosquitto.source is Source.LOCAL:
        assert mosquitto.process is not None and mosquitto.process.running
