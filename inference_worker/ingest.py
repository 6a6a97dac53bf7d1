"""The staged intake (``iotstream ingest``): broker → Redis staging stream, then PUBACK.

Why it exists (docs/streaming.md, "Staged intake"): with Mosquitto 2.0.11 a shared
subscription restored after a broker restart delivers nothing until renewed, and a frozen
shared-subscription member keeps its round-robin turn. The ingest subscribes *without*
``$share`` (``devices/+/telemetry``, persistent session, QoS 1), which the broker restores
and queues for properly, and stores every reading in the staging stream before
acknowledging it; workers (``WORKER_SOURCE=stream``) then share the work through a Redis
consumer group, where a dead or stuck consumer's readings are claimed by the others.

It runs one per broker: a second ingest would stage every reading twice (the sink would
still store each prediction once). It takes the worker's settings (``WORKER_*``): the MQTT
fields, ``redis_url`` / ``redis_prefix``, ``queue_size``, ``worker_id`` (its client id:
keep it stable, the broker queues for that session while the ingest is away),
``shutdown_grace`` and ``metrics_port``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import redis

from inference_worker.health import readiness
from inference_worker.metrics import WorkerMetrics
from inference_worker.mqtt_source import MqttSource
from inference_worker.settings import WorkerSettings
from iot_contract import RedisKeys
from iot_contract.staging import staged_fields

__all__ = ["Ingest", "run_ingest", "running_ingest"]

log = logging.getLogger(__name__)


class Ingest:
    """Moves readings from an MQTT source to the staging stream, acknowledging each batch
    after ``XADD`` succeeded (one pipelined round trip per socket read's worth)."""

    def __init__(
        self,
        settings: WorkerSettings,
        source: MqttSource,
        client: redis.Redis,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.source = source
        self.client = client
        self.stream = RedisKeys(settings.redis_prefix).ingest
        self.metrics = metrics or WorkerMetrics()
        self.last_tick = time.monotonic()
        self.redis_ok = True
        self._batch = max(64, settings.max_batch * 4)

    def ready(self) -> tuple[bool, str]:
        """Readiness: connected to the broker and Redis writable."""
        return readiness(self.source.ready(), self.redis_ok)

    def run(self, stop: threading.Event) -> None:
        """Stage readings until ``stop``; then stage what was received and return. The
        subscription stays in the broker session: readings published meanwhile wait there."""
        while not stop.is_set():
            self.last_tick = time.monotonic()
            items = self.source.take(self._batch, timeout=0.1)
            if items:
                self._stage(items, stop)
        while items := self.source.take(self._batch, timeout=0.0):
            if not self._stage(items, stop):
                break
        log.info("stopped")

    def _stage(self, items: list[Any], stop: threading.Event) -> bool:
        """Append ``items`` to the stream, retrying with backoff, then acknowledge them.
        Gives up (nothing acknowledged: the broker redelivers) only when Redis still fails
        ``shutdown_grace`` seconds into a stop."""
        m = self.metrics
        m.counter("received").inc(len(items))
        m.gauge("queue_depth").set(self.source.pending())
        m.gauge("backpressure_seconds").set(self.source.blocked_seconds)
        delay, stopping_since = 0.1, None
        while True:
            try:
                with self.client.pipeline(transaction=False) as pipe:
                    for item in items:
                        pipe.xadd(
                            self.stream,
                            staged_fields(  # type: ignore[arg-type]
                                item.topic, item.payload, item.content_type, item.received_ts
                            ),
                        )
                    pipe.execute()
                break
            except redis.RedisError as exc:
                m.counter("redis_retries").inc()
                self.redis_ok = False
                self.last_tick = time.monotonic()
                log.warning(
                    "staging %d readings failed (%s); holding them unacknowledged, "
                    "retrying in %.1fs",
                    len(items),
                    exc,
                    delay,
                )
                if stop.is_set():
                    stopping_since = stopping_since or time.monotonic()
                    if time.monotonic() - stopping_since > self.settings.shutdown_grace:
                        return False
                    time.sleep(delay)
                else:
                    stop.wait(delay)
                delay = min(delay * 2, 5.0)
        self.redis_ok = True
        m.counter("stored").inc(len(items))
        self.source.ack(items)
        return True


@contextlib.contextmanager
def running_ingest(settings: WorkerSettings) -> Iterator[Ingest]:
    """A connected ingest on a background thread; leaving the block stops it (what it
    received is staged and acknowledged first). For tests and embedding."""
    client: redis.Redis = redis.Redis.from_url(settings.redis_url, socket_timeout=5)
    source = MqttSource(settings, shared=False)
    ingest = Ingest(settings, source, client)
    stop = threading.Event()
    with client, source:
        thread = threading.Thread(target=ingest.run, args=(stop,), name="ingest", daemon=True)
        thread.start()
        try:
            yield ingest
        finally:
            stop.set()
            thread.join(30)
            if thread.is_alive():
                raise RuntimeError("the ingest did not stop within 30 s")


def run_ingest(settings: WorkerSettings) -> int:
    """Run the ingest in the foreground until SIGTERM/SIGINT. Returns the exit code."""
    from inference_worker.app import foreground, freeze_startup_objects

    client: redis.Redis = redis.Redis.from_url(
        settings.redis_url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=10
    )
    source = MqttSource(settings, shared=False)
    ingest = Ingest(settings, source, client)
    with foreground(settings, ingest) as stop, client:
        client.ping()
        with source:
            log.info("ready: staging %s into %s", settings.mqtt_url, ingest.stream)
            freeze_startup_objects()
            ingest.run(stop)
    return 0
