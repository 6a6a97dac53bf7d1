"""Worker settings, from ``WORKER_*`` environment variables (or keyword arguments)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, FilePath, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from iot_models.bundled import bundled_models_dir

__all__ = ["WorkerSettings"]


class WorkerSettings(BaseSettings):
    """Everything an inference worker can be told. Each field is ``WORKER_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="WORKER_", use_attribute_docstrings=True, extra="forbid"
    )

    worker_id: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """Stable identity: the MQTT client id and the ``worker_id`` in predictions. Keep it the
    same across restarts (StatefulSet pod name) so the broker hands back the queued session."""
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    """Broker URL: ``mqtt://host:port``, ``mqtts://host:port`` (TLS), ``ws://`` or ``wss://``
    (MQTT over WebSockets, path ``/mqtt`` unless the URL gives one); ``memory://<name>``: the
    in-memory source (component tests, embedding). Checked when the settings are read."""
    mqtt_username: str | None = None
    """Broker user name (the production broker refuses anonymous clients)."""
    mqtt_password: SecretStr | None = None
    """Broker password."""
    mqtt_ca_file: FilePath | None = None
    """CA bundle for ``mqtts://`` / ``wss://``; the system store when unset."""
    mqtt_cert_file: FilePath | None = None
    """Client certificate (PEM) for brokers that require one on TLS listeners."""
    mqtt_key_file: FilePath | None = None
    """Private key of ``mqtt_cert_file`` when it is not in that file."""
    mqtt_protocol: Literal["3.1.1", "5"] = "5"
    """MQTT version the worker speaks; devices may use either. 5 gives a session that expires
    (``session_expiry``), the flow-control window ``receive_maximum`` and the readings'
    content type; both cost the same worker CPU per reading (docs/streaming.md)."""
    share_group: str = Field(default="workers", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    """Shared-subscription group: each reading goes to one worker of the group."""
    qos: Literal[0, 1] = 1
    """Subscription QoS. 1 gives at-least-once: a reading is acknowledged only once stored."""
    session_expiry: int = Field(default=3600, ge=0)
    """Seconds the broker keeps this worker's session (and queued readings) while it is away."""
    receive_maximum: int = Field(default=512, ge=1, le=65535)
    """Unacknowledged QoS 1 readings the broker may have in flight to this worker (MQTT 5).
    Keep it a few times ``max_batch``; on 3.1.1 the broker's ``max_inflight_messages`` rules."""
    keepalive: int = Field(default=30, ge=5)
    """MQTT keepalive in seconds."""

    source: Literal["mqtt", "stream"] = "mqtt"
    """Where readings come from. ``mqtt``: straight from the broker through the shared
    subscription (one hop less; a broker restart loses the readings published before the
    workers resubscribe, and a frozen worker holds its share). ``stream``: from the Redis
    staging stream that ``iotstream ingest`` fills, through the consumer group
    ``share_group``; a broker restart loses nothing and a stuck or dead worker's readings
    are claimed by the others after ``claim_idle_s`` (docs/streaming.md, "Staged intake")."""
    claim_idle_s: float = Field(default=5.0, ge=0.1)
    """``stream`` source: readings another worker took and left unacknowledged this long
    are claimed (``XAUTOCLAIM``) and scored here. A healthy worker acknowledges within
    milliseconds; keep this well above the longest Redis outage you want to ride out."""
    claim_every_s: float = Field(default=1.0, gt=0)
    """``stream`` source: seconds between claim passes (and trims of acknowledged entries)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis URL (``redis://``, ``rediss://`` (TLS) or ``unix://``); ``memory://<name>``: the
    in-memory sink (component tests, embedding). Checked when the settings are read."""
    redis_prefix: str = "iotstream"
    """Prefix of every Redis key (one deployment per prefix)."""
    stream_maxlen: int = Field(default=1_000_000, ge=1000)
    """Approximate cap on the predictions stream (``XADD MAXLEN ~``): the resume window."""
    deadletter_maxlen: int = Field(default=100_000, ge=100)
    """Approximate cap on the dead-letter stream."""
    dedup_ttl: int = Field(default=7 * 24 * 3600, ge=60)
    """Seconds a ``(device_id, seq)`` is remembered for deduplication of redeliveries."""

    models_dir: Path = Field(default_factory=bundled_models_dir)
    """Model repository (``<name>/<version>/manifest.json``); unset: the models shipped with
    iotstream (package data, ``models/`` in a checkout), wherever it is installed."""
    models: Annotated[list[str] | None, NoDecode] = None
    """Models to serve, comma-separated route names; all in the repository when unset."""
    default_model: str = "fault-clf"
    """Route for readings that name no model and match no ``routes`` rule."""
    routes: dict[str, str] = Field(default_factory=dict)
    """Topic rules: JSON object ``{"<device-id glob>": "<model>"}``, first match wins, e.g.
    ``{"fan-*": "vib-ae"}``. A reading's own ``model`` field takes precedence."""
    variant: str | None = None
    """Force a model variant (``fp32``, ``int8-x86_64``, ``int8-x86_64-novnni``,
    ``int8-arm64``); the manifest's measured default for this CPU when unset."""
    intra_op_threads: int = Field(default=1, ge=1)
    """ONNX Runtime intra-op threads per model."""
    model_store: str | None = None
    """Follow a model store (``s3://bucket/prefix``, ``file:///path``): serve the versions
    its ``model_alias`` names (and their canaries) instead of ``models_dir``, and swap to
    new ones between two batches when the alias moves (docs/models.md, "Model lifecycle").
    S3 endpoint and credentials: ``AWS_ENDPOINT_URL_S3``, ``AWS_ACCESS_KEY_ID``,
    ``AWS_SECRET_ACCESS_KEY``."""
    model_alias: str = Field(default="production", pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    """The alias followed in ``model_store``."""
    model_poll_s: float = Field(default=2.0, gt=0)
    """Seconds between polls of the alias (one conditional request per model)."""
    model_cache_dir: Path = Field(
        default_factory=lambda: Path.home() / ".cache" / "iotstream" / "models"
    )
    """Local copies of the versions served and of their alias: a worker that starts while
    the store does not answer serves these, and follows the store once it does."""

    # --- feature drift against the training reference (docs/models.md, "Feature drift") ---
    drift_enabled: bool = True
    """Measure feature drift: each served version whose manifest carries a training
    reference (``reference``; versions without one are skipped) is compared with the live
    readings (population stability index per feature; docs/models.md, "Feature drift")."""
    drift_window: int = Field(default=5000, ge=100)
    """Readings per model version in the live window (a sliding window that moves by a
    tenth of this). Larger: steadier PSI, slower to notice and to clear."""
    drift_min_window: int = Field(default=1000, ge=1)
    """Nothing is measured until a version's window holds this many readings."""
    drift_interval: float = Field(default=10.0, gt=0)
    """Seconds between drift measurements (gauges, the status in Redis, events)."""
    drift_threshold: float = Field(default=0.25, gt=0)
    """PSI at which a model counts as drifting (it stops below 0.8 times this). 0.25 is the
    usual "significant shift" mark; a fleet of n machines shows about 4 / n from its mix of
    machines alone with the 5-bin references (measured: at most 0.2 at 50 machines, 0.14
    at 100), so small fleets need a higher value."""

    # --- capture of scored readings for retraining (docs/models.md, "Capture") ---------
    capture_url: str | None = None
    """Keep a sample of scored readings (features, prediction, model version, ground
    truth) as Parquet in this store: a folder, ``file:///path`` or ``s3://bucket/prefix``
    (same endpoint and credential variables as ``model_store``). Unset: capture is off.
    Needs pyarrow (``pip install 'iotstream[capture]'``); the worker refuses to start
    without it when this is set."""
    capture_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of scored readings captured once ``capture_url`` is set (the URL switches
    capture on, so all by default; 0 keeps it off). Deterministic per ``(device_id,
    seq)``: a redelivered reading is sampled the same way."""
    capture_flush_rows: int = Field(default=10_000, ge=1)
    """A capture file is written once this many rows are buffered ..."""
    capture_flush_seconds: float = Field(default=60.0, gt=0)
    """... or this many seconds after the first buffered row."""
    capture_queue_batches: int = Field(default=4, ge=1)
    """Full buffers waiting for a slow or unreachable store; beyond it the oldest is
    dropped (``iotstream_worker_capture_dropped_total``): capture never slows scoring.
    Memory bound: about ``(capture_queue_batches + 2) * capture_flush_rows`` readings."""
    capture_retention_hours: float = Field(default=168.0, ge=0)
    """Captured partitions (hours) that ended longer ago than this are deleted by the
    workers (at start and every 5 minutes); 0 keeps everything."""

    max_batch: int = Field(default=64, ge=1, le=4096)
    """A micro-batch closes at this many readings ..."""
    max_wait_ms: float = Field(default=5.0, ge=0)
    """... or this many milliseconds after its first reading, whichever comes first (the
    bound under both batch policies)."""
    batch_policy: Literal["fixed", "adaptive"] = "fixed"
    """When a micro-batch closes (docs/streaming.md, "Batch-cut policies"). ``fixed``: at
    ``max_batch`` readings or ``max_wait_ms``, whatever the traffic. ``adaptive``: as soon as
    waiting is not expected to pay: at once when no other reading is expected within
    ``batch_target_wait_ms`` (idle, trickle), at ``batch_target_wait_ms`` when the batch
    would not fill within twice that at the recent arrival rate, and like ``fixed`` (full
    batches) under load; but a batch closes before ``max_wait_ms`` only once it is large
    enough for ``batch_cost_share`` and ``batch_cpu_budget``, or at the time it is expected
    to be. Lower latency below ~20k readings/s (p99 5.6-5.9 ms instead of 6.9-7.6 at
    5k-10k/s on the 2-vCPU test machine, 2026-12-01) for up to ``batch_cpu_budget`` more
    CPU per reading (1.06-1.09x measured there): docs/streaming.md."""
    batch_target_wait_ms: float = Field(default=1.5, ge=0)
    """``adaptive``: the longest a reading waits for a batch that is not going to fill
    (capped at ``max_wait_ms``). Lower: less latency, more batches per second (CPU)."""
    batch_cost_share: float = Field(default=0.35, ge=0, lt=1)
    """``adaptive``: the share of the worker's CPU per reading, under the ``fixed`` policy,
    that its micro-batches' own cost makes up (a model call and a Redis round trip per
    batch, each paid with cold caches; ``iotstream bench batching --batch-cost 0`` fits it
    from the two policies: 0.22-0.37 on the 2-vCPU test machine from 2k to 10k readings/s,
    over several days; with the default the CPU measured 1-4 points under
    ``batch_cpu_budget`` there on 2026-12-01).
    Above 0, a batch closes before ``max_wait_ms`` only at the size that keeps the CPU per
    reading within ``batch_cpu_budget`` of the fixed policy's at the recent rate (about
    0.78 of the fixed policy's batch at the defaults; docs/streaming.md). 0: lowest
    latency, CPU not counted (about 1.3x the fixed policy's CPU at 5k-10k/s there)."""
    batch_cpu_budget: float = Field(default=0.10, gt=0)
    """``adaptive`` with ``batch_cost_share``: the CPU per reading the policy may spend
    over the fixed policy's (0.10: 10 % more)."""
    score_on_intake: bool = True
    """Cut, score and store micro-batches on the MQTT network thread, which wakes for each
    socket read anyway, instead of waking the worker's own thread for each batch (7-16 %
    less worker CPU per reading at 5k-20k readings/s, and lower latency:
    docs/streaming.md). Under load (more than two batches waiting, or the Redis writer
    busy) the worker's thread takes the work over until the load has passed. Sources
    without a network thread of their own (``memory://``, the staged ``stream`` intake)
    always use the worker's thread."""
    queue_size: int = Field(default=2048, ge=1)
    """Readings buffered between the MQTT thread and inference. When full the MQTT thread
    stops reading (backpressure: unacknowledged readings stay with the broker)."""
    read_interval_ms: float = Field(default=1.0, ge=0, le=100)
    """At most one socket read per this many milliseconds: under load each read then takes
    in many messages at once (fewer thread wake-ups, less CPU per reading) for at most this
    much added latency. 0: read as soon as data arrives."""
    max_payload: int = Field(default=65536, ge=64)
    """Payloads larger than this are dead-lettered unread (reason ``oversize``). One limit with
    the broker's: render its config with the same value (``iotstream broker config --set
    max_payload=N``, same default), which sets ``max_packet_size`` to N + 1 KiB, so such
    payloads reach the worker; bigger packets the broker refuses (DISCONNECT 0x95). A unit
    test checks the defaults agree."""
    publish_inference: bool = False
    """Also publish each prediction to ``devices/{id}/inference`` (QoS 0)."""
    record_features: bool = True
    """Carry each reading's feature values in its prediction (``features``), so the dashboard
    can chart a device's sensor channels beside the score. Costs ~0.04 us per prediction to
    build and ~16 numbers more per record in Redis and on the WebSocket; ``false`` leaves
    them out."""
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """Serve ``/metrics`` (Prometheus), ``/healthz`` (liveness: the run loop turns) and
    ``/readyz`` (subscribed, Redis writable) on this port when set."""
    unsubscribe_on_stop: bool = True
    """On a graceful stop, leave the shared subscription first. Right when other workers of
    the group go on or this one leaves for good (scale-down): the broker stops sending it
    readings. ``false`` keeps the subscription in the session: the broker queues this
    worker's share of the readings until it comes back with the same ``worker_id`` (or the
    session expires), so restarting the *only* worker of a group (edge node, demo) loses
    nothing; a broker drops readings for a group with no subscriber at all."""
    shutdown_grace: float = Field(default=10.0, ge=0)
    """Seconds a stopping worker keeps retrying Redis before it leaves the rest of its
    readings unacknowledged (the broker redelivers them) and exits."""
    report_every: float = Field(default=30.0, gt=0)
    """Seconds between progress lines in the log."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    """Python log level (any case in the environment)."""
    log_format: Literal["text", "json"] = "text"
    """``json``: one JSON object per log line, for log collectors."""

    @field_validator("mqtt_url")
    @classmethod
    def _broker_url(cls, value: str) -> str:
        from inference_worker.bus import is_memory_url  # not at import: --help stays light

        if is_memory_url(value):  # the in-memory source
            return value
        from iot_mqtt.connection import check_broker_url  # paho: only once settings are built

        return check_broker_url(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        from inference_worker.bus import is_memory_url

        if is_memory_url(value):  # the in-memory sink
            return value
        from redis.connection import parse_url  # redis-py's own reading of the URL

        parse_url(value)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        return value

    @field_validator("model_store", "capture_url")
    @classmethod
    def _store_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        from iot_models.store.base import check_store_url

        return check_store_url(
            value, "model store" if info.field_name == "model_store" else "object store"
        )

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("models", mode="before")
    @classmethod
    def _split_models(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value
