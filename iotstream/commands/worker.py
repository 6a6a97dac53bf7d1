"""``iotstream worker`` and ``iotstream ingest``: an inference worker, and the staged intake
that feeds workers running with ``WORKER_SOURCE=stream``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from iotstream.commands.lazy import add_deferred_service_command

if TYPE_CHECKING:
    from inference_worker.settings import WorkerSettings

__all__ = ["register"]

EPILOG = """\
examples:
  iotstream worker                                  localhost broker and Redis, models/
  iotstream worker --worker-id worker-0 --mqtt-url mqtts://broker:8883 --mqtt-username worker-0
  WORKER_MAX_BATCH=128 WORKER_VARIANT=fp32 iotstream worker
"""


INGEST_EPILOG = """\
examples:
  iotstream ingest --worker-id ingest-0                     then: iotstream worker --source stream
  iotstream ingest --mqtt-url mqtts://broker:8883 --mqtt-username ingest-0 --metrics-port 9101
"""


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``worker`` and ``ingest``."""
    settings = "inference_worker.settings:WorkerSettings"
    add_deferred_service_command(subparsers, "worker", settings, _worker, epilog=EPILOG)
    add_deferred_service_command(subparsers, "ingest", settings, _ingest, epilog=INGEST_EPILOG)


def _worker(settings: WorkerSettings) -> int:
    """run an inference worker (MQTT in, ONNX Runtime, Redis out)

    Consume readings through an MQTT shared subscription, micro-batch them through ONNX
    Runtime and store predictions in Redis Streams. At-least-once: a reading is acknowledged
    only after its prediction is stored; redeliveries are deduplicated. SIGTERM stops
    gracefully (unsubscribe, finish, acknowledge, disconnect).
    """
    return _run("worker", settings)


def _ingest(settings: WorkerSettings) -> int:
    """stage readings from the broker in Redis for workers with --source stream

    Subscribe to devices/+/telemetry (no shared subscription; persistent session, QoS 1),
    append every reading to the Redis staging stream <prefix>:ingest and acknowledge it to
    the broker only once stored. Workers started with --source stream share that stream
    through a consumer group: a broker restart loses nothing and a stuck or dead worker's
    readings are claimed by the others. Run one per broker. Takes the worker's settings
    (MQTT, Redis, queue, metrics).
    """
    return _run("ingest", settings)


def _run(command: str, settings: WorkerSettings) -> int:
    import redis

    from inference_worker.app import run
    from inference_worker.ingest import run_ingest
    from inference_worker.mqtt_source import MqttSourceError
    from iot_models.manifest import ModelError
    from iotstream.logs import configure_logging, redact_credentials

    configure_logging(settings.log_level, settings.worker_id, settings.log_format)
    try:
        return run_ingest(settings) if command == "ingest" else run(settings)
    except (MqttSourceError, ModelError, redis.RedisError) as exc:
        why = redact_credentials(f"{type(exc).__name__}: {exc}")
        print(f"iotstream {command}: {why}", file=sys.stderr)
        return 1
