"""Worker end to end on real Mosquitto and Redis (in-process worker, numpy test model)."""

from __future__ import annotations

import logging
import subprocess
import threading
import time

import msgpack
import pytest
import redis

from inference_worker.app import running_worker
from inference_worker.bus import SinkError
from inference_worker.mqtt_source import MqttSource
from inference_worker.redis_sink import RedisSink
from inference_worker.settings import WorkerSettings
from iot_contract import (
    MSGPACK_CONTENT_TYPE,
    ContractError,
    DeadLetter,
    Reading,
    RedisKeys,
    RejectReason,
    telemetry_topic,
)
from iot_models.core import PredictionRecord
from iot_mqtt.connection import MqttEndpoint, make_client
from iotstream.localservices import find_binary
from tests.harness.models import linear_core
from tests.harness.pipeline import (
    deadletters,
    predictions,
    publish,
    reading_messages,
    settle,
    wait_for,
    worker_settings,
)
from tests.harness.services import Service

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(
    mosquitto: Service, redis_service: Service, redis_keys: RedisKeys, unique: str
) -> WorkerSettings:
    return worker_settings(mosquitto.url, redis_service.url, redis_keys, unique, max_batch=16)


@pytest.fixture(params=[True, False], ids=["score-on-intake", "score-on-worker-thread"])
def either_thread(request: pytest.FixtureRequest, settings: WorkerSettings) -> WorkerSettings:
    """``settings`` with batches cut, scored and stored on the MQTT network thread (the
    default), and on the worker's own thread."""
    return settings.model_copy(update={"score_on_intake": request.param})


def fleet(unique: str, n: int, devices: int = 5) -> list[Reading]:
    return [
        Reading(
            device_id=f"dev{unique}-{i % devices}",
            seq=i // devices,
            ts=time.time(),
            features=[i % 7, (i * 3) % 5, 0.25],
            label="normal",
        )
        for i in range(n)
    ]


def test_every_reading_gets_exactly_one_prediction_equal_to_a_direct_run(
    either_thread: WorkerSettings,
    mosquitto: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = either_thread
    sent = fleet(unique, 300)
    with (
        caplog.at_level(logging.INFO, "inference_worker.service"),
        running_worker(settings, linear_core(settings.worker_id)),
    ):
        half = len(sent) // 2
        publish(mosquitto, reading_messages(sent[:half]), client_id=f"p1{unique}")
        publish(
            mosquitto, reading_messages(sent[half:], MSGPACK_CONTENT_TYPE), client_id=f"p2{unique}"
        )
        assert wait_for(rclient, redis_keys.predictions, len(sent)) == len(sent)
    got = predictions(rclient, redis_keys)
    assert settle(rclient, redis_keys.predictions) == len(sent)
    by_key = {(p.device_id, p.seq): p for p in got}
    assert len(by_key) == len(sent), "one prediction per reading, no duplicates"
    direct = linear_core("direct").infer(sent, received_ts=0.0).predictions
    for expected in direct:
        p = by_key[(expected.device_id, expected.seq)]
        assert p.score == expected.score
        assert (p.label, p.anomaly, p.probabilities) == (
            expected.label,
            expected.anomaly,
            expected.probabilities,
        )
        assert p.truth == "normal"
        assert p.hops.device_ts <= p.hops.received_ts + 1
        assert p.hops.received_ts <= p.hops.inferred_ts <= (p.hops.published_ts or 0)
    latest = rclient.hgetall(redis_keys.latest)
    assert len(latest) == 5
    on_intake = "batches are cut, scored and stored on the source's network thread"
    assert (on_intake in caplog.text) == settings.score_on_intake


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_bad_payloads_are_dead_lettered_and_good_ones_flow(
    settings: WorkerSettings,
    mosquitto: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
    protocol: str,
) -> None:
    settings = settings.model_copy(update={"mqtt_protocol": protocol})
    dev = f"dev{unique}"
    topic = telemetry_topic(dev)
    good = [Reading(device_id=dev, seq=i, ts=1.0, features=[1.0, 2.0, 3.0]) for i in range(4)]
    hostile: list[tuple[str, bytes, str | None]] = [
        (topic, b"{not json", None),
        (topic, b'{"device_id":"%s","seq":1,"ts":1,"features":[NaN,1,2]}' % dev.encode(), None),
        (
            topic,
            msgpack.packb(
                {"device_id": dev, "seq": 2, "ts": 1.0, "features": [float("inf"), 1.0, 2.0]}
            ),
            MSGPACK_CONTENT_TYPE,
        ),
        (topic, b'{"device_id":"%s","seq":3,"ts":1,"features":[1,2]}' % dev.encode(), None),
        (topic, b'{"device_id":"other","seq":4,"ts":1,"features":[1,2,3]}', None),
        (
            topic,
            b'{"device_id":"%s","seq":5,"ts":1,"features":[1,2,3],"model":"nope"}' % dev.encode(),
            None,
        ),
        (topic, b"x" * 70_000, None),
        (topic, b"\x00\xff\xfe", MSGPACK_CONTENT_TYPE),
    ]
    expected = [
        RejectReason.MALFORMED,
        RejectReason.INVALID,
        RejectReason.INVALID,
        RejectReason.FEATURE_COUNT,
        RejectReason.DEVICE_MISMATCH,
        RejectReason.UNKNOWN_MODEL,
        RejectReason.OVERSIZE,
        RejectReason.MALFORMED,
    ]
    if protocol == "5":  # a 3.1.1 subscriber never sees content types (payloads are sniffed)
        hostile.append(
            (
                topic,
                b'{"device_id":"%s","seq":6,"ts":1,"features":[1,2,3]}' % dev.encode(),
                "text/csv",
            )
        )
        expected.append(RejectReason.UNSUPPORTED_CONTENT_TYPE)
    messages = reading_messages(good[:2]) + hostile + reading_messages(good[2:])
    with running_worker(settings, linear_core(settings.worker_id)):
        publish(mosquitto, messages, client_id=f"p{unique}")
        wait_for(rclient, redis_keys.deadletter, len(hostile))
        wait_for(rclient, redis_keys.predictions, len(good))
    assert sorted(p.seq for p in predictions(rclient, redis_keys)) == [0, 1, 2, 3]
    dead = deadletters(rclient, redis_keys)
    assert sorted(d.reason for d in dead) == sorted(expected)
    (oversize,) = [d for d in dead if d.reason is RejectReason.OVERSIZE]
    assert oversize.payload_size == 70_000
    assert len(oversize.payload) == 1024
    assert all(d.topic == topic for d in dead)
    assert all(d.worker_id == settings.worker_id for d in dead)


def test_reading_from_mosquitto_pub_cli_is_processed(
    settings: WorkerSettings,
    mosquitto: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
) -> None:
    binary = find_binary("mosquitto_pub")
    assert binary, "mosquitto_pub comes with mosquitto-clients (scripts/bootstrap installs it)"
    dev = f"esp{unique}"
    with running_worker(settings, linear_core(settings.worker_id)):
        for version in ("mqttv311", "mqttv5"):
            payload = '{"device_id": "%s", "seq": %d, "ts": 1764129600.5, "features": [1, 2, 3]}'
            subprocess.run(
                [
                    binary,
                    "-h",
                    mosquitto.host,
                    "-p",
                    str(mosquitto.port),
                    "-V",
                    version,
                    "-q",
                    "1",
                    "-t",
                    telemetry_topic(dev),
                    "-m",
                    payload % (dev, 1 if version == "mqttv5" else 0),
                ],
                check=True,
                timeout=10,
            )
        assert wait_for(rclient, redis_keys.predictions, 2) == 2
    assert sorted(p.seq for p in predictions(rclient, redis_keys)) == [0, 1]


def test_sink_deduplicates_redelivered_readings(
    rclient: redis.Redis, redis_keys: RedisKeys, unique: str
) -> None:
    sink = RedisSink(rclient, redis_keys)
    readings = fleet(unique, 40, devices=2)
    core = linear_core("w")
    first = core.infer(readings[:30], received_ts=1.0).records
    again = core.infer(readings[10:], received_ts=2.0).records  # 20 repeats + 10 new
    r1 = sink.write(first, [], at=3.0)
    r2 = sink.write(again, [], at=4.0)
    assert (r1.stored, r1.duplicates) == (30, 0)
    assert (r2.stored, r2.duplicates) == (10, 20)
    stored = predictions(rclient, redis_keys)
    assert sorted((p.device_id, p.seq) for p in stored) == sorted(
        (r.device_id, r.seq) for r in readings
    )
    assert all(p.hops.published_ts in (3.0, 4.0) for p in stored)


def test_send_then_collect_stores_like_write_and_fails_safe(
    redis_service: Service, rclient: redis.Redis, redis_keys: RedisKeys, unique: str
) -> None:
    """The run loop's split write (send now, read the answer at the next wake-up): the same
    records, dedup and dead letters as ``write``; a lost script or a dropped connection is
    a SinkError, after which ``write`` of the same batch works."""
    sink = RedisSink.from_url(redis_service.url, redis_keys)
    readings = fleet(unique, 30, devices=3)
    core = linear_core("w")
    records = core.infer(readings[:20], received_ts=1.0).records
    bad = DeadLetter.from_error(
        ContractError(RejectReason.MALFORMED, "not JSON"),
        topic=telemetry_topic("pump-x"),
        payload=b"{",
        received_ts=1.0,
        worker_id="w",
        content_type=None,
        device_id="pump-x",
    )
    sink.write(records[:5], [], at=2.0)  # loads the script
    sink.send(records, [bad], at=3.0)
    result = sink.collect()
    assert (result.stored, result.duplicates, result.deadletters) == (15, 5, 1)
    assert len(predictions(rclient, redis_keys)) == 20
    assert [d.reason for d in deadletters(rclient, redis_keys)] == [RejectReason.MALFORMED]

    more = core.infer(readings[20:25], received_ts=1.0).records
    rclient.script_flush()  # as after a Redis restart
    sink.send(more, [], at=4.0)
    with pytest.raises(SinkError, match="NoScript"):
        sink.collect()
    assert sink.write(more, [], at=4.0).stored == 5  # write loads the script again

    last = core.infer(readings[25:], received_ts=1.0).records
    sink.send(last[:1], [], at=5.0)
    sink.collect()
    rclient.client_kill_filter(_type="normal", skipme=True)  # the sink's connection drops
    with pytest.raises(SinkError):  # at the send or at the collect, as the kernel has it
        _send_and_collect(sink, last, 5.0)
    assert sink.write(last, [], at=5.0).stored == 4
    assert len(predictions(rclient, redis_keys)) == 30
    sink.close()


def _send_and_collect(sink: RedisSink, records: list[PredictionRecord], at: float) -> None:
    sink.send(records, [], at)
    sink.collect()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_acknowledged_readings_are_not_redelivered_after_restart(
    settings: WorkerSettings,
    mosquitto: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
    protocol: str,
) -> None:
    """Batched PUBACKs really reach the broker: a restarted worker with the same id (same
    persistent session) gets nothing again. Broken acks would show up as redeliveries."""
    settings = settings.model_copy(update={"mqtt_protocol": protocol})
    sent = fleet(unique, 200)
    with running_worker(settings, linear_core(settings.worker_id)) as (worker, _):
        publish(mosquitto, reading_messages(sent), client_id=f"p{unique}")
        assert wait_for(rclient, redis_keys.predictions, 200) == 200
        assert worker.metrics.counter("received")._value.get() == 200
        # the writer acknowledges a batch just after storing it: give the last one a moment
        deadline = time.monotonic() + 5
        while worker.metrics.gauge("acks_pending")._value.get() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert worker.metrics.gauge("acks_pending")._value.get() == 0
        assert worker.metrics.histogram("inference_seconds")._sum.get() > 0
    with running_worker(settings, linear_core(settings.worker_id)) as (again, _):
        time.sleep(1.0)
        assert again.metrics.counter("received")._value.get() == 0
        assert isinstance(again.source, MqttSource)
        assert again.source.generation == 1
    assert settle(rclient, redis_keys.predictions) == 200


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
@pytest.mark.parametrize("unsubscribe_on_stop", [False, True])
def test_restarting_the_only_worker_of_a_group(
    settings: WorkerSettings,
    mosquitto: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
    protocol: str,
    unsubscribe_on_stop: bool,
) -> None:
    """Readings published while the group's only worker restarts gracefully: kept in its
    session and processed once it is back when it keeps its subscription; dropped by the
    broker (a group with no subscriber) when it unsubscribes, the default, which suits
    groups of several workers and scale-down."""
    settings = settings.model_copy(
        update={"mqtt_protocol": protocol, "unsubscribe_on_stop": unsubscribe_on_stop}
    )
    sent = fleet(unique, 200)
    with running_worker(settings, linear_core(settings.worker_id)):
        publish(mosquitto, reading_messages(sent[:100]), client_id=f"p{unique}")
        assert wait_for(rclient, redis_keys.predictions, 100) == 100
    publish(mosquitto, reading_messages(sent[100:]), client_id=f"p{unique}")
    with running_worker(settings, linear_core(settings.worker_id)) as (again, _):
        if unsubscribe_on_stop:
            time.sleep(1.0)
            assert again.metrics.counter("received")._value.get() == 0
        else:
            assert wait_for(rclient, redis_keys.predictions, 200) == 200
    stored = [(p.device_id, p.seq) for p in predictions(rclient, redis_keys)]
    assert len(stored) == len(set(stored)), "a reading was stored twice"
    expected = sent[:100] if unsubscribe_on_stop else sent
    assert set(stored) == {(r.device_id, r.seq) for r in expected}


def test_a_graceful_restart_under_load_keeping_the_subscription_loses_nothing(
    either_thread: WorkerSettings,
    mosquitto: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
) -> None:
    """Readings keep coming while the only worker stops (finishing what it holds, leaving
    the rest unacknowledged) and starts again: each is stored exactly once."""
    settings = either_thread.model_copy(update={"unsubscribe_on_stop": False})
    sent = fleet(unique, 1500)
    messages = reading_messages(sent)

    def trickle() -> None:  # ~1,000 readings/s from one connection
        client = make_client(MqttEndpoint.from_url(mosquitto.url), f"p{unique}")
        client.max_inflight_messages_set(100)
        client.connect(mosquitto.host, mosquitto.port)
        client.loop_start()
        try:
            infos = []
            for start in range(0, len(messages), 20):
                for topic, payload, _ in messages[start : start + 20]:
                    infos.append(client.publish(topic, payload, qos=1))
                time.sleep(0.02)
            for info in infos:
                info.wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()

    publisher = threading.Thread(target=trickle, daemon=True)
    with running_worker(settings, linear_core(settings.worker_id)) as (first, _):
        publisher.start()
        wait_for(rclient, redis_keys.predictions, 300)
    stopped_at = rclient.xlen(redis_keys.predictions)
    time.sleep(0.3)
    with running_worker(settings, linear_core(settings.worker_id)):
        publisher.join(60)
        assert wait_for(rclient, redis_keys.predictions, len(sent)) == len(sent)
    assert 0 < stopped_at < len(sent), "the stop did not happen under load"
    assert first.metrics.gauge("acks_pending")._value.get() == 0
    stored = [(p.device_id, p.seq) for p in predictions(rclient, redis_keys)]
    assert len(stored) == len(set(stored)) == len(sent)


def test_predictions_go_back_to_the_device_when_asked(
    settings: WorkerSettings, mosquitto: Service, unique: str
) -> None:
    import queue

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from iot_contract import JsonCodec, Prediction, inference_topic

    dev = f"act{unique}"
    got: queue.Queue[bytes] = queue.Queue()
    listener = mqtt.Client(CallbackAPIVersion.VERSION2)
    listener.on_message = lambda _c, _u, msg: got.put(bytes(msg.payload))
    listener.connect(mosquitto.host, mosquitto.port)
    listener.subscribe(inference_topic(dev), qos=0)
    listener.loop_start()
    settings = settings.model_copy(update={"publish_inference": True})
    try:
        with running_worker(settings, linear_core(settings.worker_id)):
            time.sleep(0.2)
            reading = Reading(device_id=dev, seq=3, ts=1.0, features=[1.0, 2.0, 3.0])
            publish(mosquitto, reading_messages([reading]), client_id=f"p{unique}")
            prediction = JsonCodec().decode(got.get(timeout=10), Prediction)
    finally:
        listener.disconnect()
        listener.loop_stop()
    assert (prediction.device_id, prediction.seq) == (dev, 3)
    assert prediction.hops.published_ts is not None


def test_two_workers_split_a_stream_with_nothing_lost_or_duplicated(
    settings: WorkerSettings,
    mosquitto: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
) -> None:
    first = settings.model_copy(update={"worker_id": f"a-{unique}"})
    second = settings.model_copy(update={"worker_id": f"b-{unique}"})
    sent = fleet(unique, 1000, devices=20)
    with (
        running_worker(first, linear_core(first.worker_id)) as (w1, _),
        running_worker(second, linear_core(second.worker_id)) as (w2, _),
    ):
        publish(mosquitto, reading_messages(sent), client_id=f"p{unique}")
        assert wait_for(rclient, redis_keys.predictions, 1000) == 1000
    assert settle(rclient, redis_keys.predictions) == 1000
    got = predictions(rclient, redis_keys)
    assert {(p.device_id, p.seq) for p in got} == {(r.device_id, r.seq) for r in sent}
    by_worker = {w: sum(p.worker_id == w for p in got) for w in (first.worker_id, second.worker_id)}
    assert all(n >= 200 for n in by_worker.values()), by_worker
    assert (
        w1.metrics.counter("received")._value.get() + w2.metrics.counter("received")._value.get()
        == 1000
    )
