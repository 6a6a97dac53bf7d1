"""Messages that cross a process boundary: MQTT payloads and Redis stream records.

Every message carries ``schema_version``; this build speaks version :data:`SCHEMA_VERSION`.
Validation is strict: numbers must be numbers (no ``"1.5"`` strings, no booleans),
floats must be finite, unknown fields are refused (a typo is an error, not a silent default).
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from iot_contract.errors import ContractError, RejectReason
from iot_contract.topics import DEVICE_ID_PATTERN

__all__ = [
    "DEADLETTER_PAYLOAD_CAP",
    "MAX_BOOT",
    "MAX_FEATURES",
    "SCHEMA_VERSION",
    "Boot",
    "DeadLetter",
    "DeviceId",
    "FiniteFloat",
    "Hops",
    "ModelName",
    "ModelRef",
    "Prediction",
    "Reading",
]

SCHEMA_VERSION: Final = 1
MAX_FEATURES: Final = 4096
"""Upper bound on a reading's feature vector, whatever the model (each model checks its own)."""
DEADLETTER_PAYLOAD_CAP: Final = 1024
"""Bytes of a rejected payload kept in its dead-letter record."""
MAX_BOOT: Final = 2**53 - 1
"""Largest boot id: every value up to it survives JSON in a browser (a double)."""

DeviceId = Annotated[str, StringConstraints(strict=True, pattern=rf"^{DEVICE_ID_PATTERN}$")]
ModelName = Annotated[str, StringConstraints(strict=True, pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Label = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=64)]
FiniteFloat = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Seq = Annotated[int, Field(strict=True, ge=0, le=2**63 - 1)]
Timestamp = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0)]
Boot = Annotated[int, Field(strict=True, ge=0, le=MAX_BOOT)]
"""Identifies one run of a device (Sparkplug B's ``bdSeq`` plays the same part)."""


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


class Reading(_Message):
    """One feature vector from one device: ``devices/{device_id}/telemetry``.

    Example (JSON)::

        {"schema_version": 1, "device_id": "pump-7", "seq": 42, "ts": 1764129600.25,
         "features": [0.12, 3.4, 71.5]}
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    """Contract version; omitted means 1."""
    device_id: DeviceId
    """Must equal the device id in the topic."""
    boot: Boot | None = None
    """A new value every time the device starts (a boot counter kept in flash, or a random
    number drawn at start; it must not repeat within the deduplication window).
    ``(device_id, boot, seq)`` identifies the reading, so ``seq`` may start again at each
    boot. Omitted: the worker counts the reading as boot-less and deduplicates it on
    ``(device_id, seq, ts)`` instead (see docs/streaming.md)."""
    seq: Seq
    """Monotonic per device run; with ``device_id`` and ``boot`` the deduplication key."""
    ts: Timestamp
    """Device clock, seconds since the epoch."""
    model: ModelName | None = None
    """Route key: which model scores this reading; omitted means the worker's default route."""
    features: Annotated[list[FiniteFloat], Field(min_length=1, max_length=MAX_FEATURES)]
    """Feature values in the model's documented order; finite numbers only."""
    label: Label | None = None
    """Ground truth when the sender knows it (the simulator does); carried into the prediction."""


class ModelRef(_Message):
    """Which model produced a prediction."""

    name: ModelName
    version: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=64)]
    variant: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=32)]
    """``fp32``, ``int8-x86_64``, ``int8-arm64``, ..."""


class Hops(_Message):
    """Timestamps (epoch seconds) along the path, for per-hop latency."""

    device_ts: Timestamp
    """When the device took the reading (device clock)."""
    received_ts: Timestamp
    """When the worker received the MQTT message."""
    inferred_ts: Timestamp
    """When the model's output was ready."""
    published_ts: Timestamp | None = None
    """When the prediction was written to Redis (set by the writer)."""


class Prediction(_Message):
    """A model's output for one reading; a record of the ``predictions`` stream."""

    schema_version: Literal[1] = SCHEMA_VERSION
    device_id: DeviceId
    boot: Boot | None = None
    """The reading's ``boot``, if it had one."""
    seq: Seq
    model: ModelRef
    score: FiniteFloat
    """Anomaly score: 1 - P(normal) for classifiers, reconstruction error for autoencoders."""
    anomaly: bool
    """The model's threshold applied to ``score``."""
    label: Label | None = None
    """Predicted class, for classifiers."""
    probabilities: dict[Label, FiniteFloat] | None = None
    """Per-class probabilities, for classifiers."""
    values: list[FiniteFloat] | None = None
    """Raw numeric outputs, for regressors."""
    truth: Label | None = None
    """The reading's ground-truth ``label``, if it had one."""
    features: Annotated[list[FiniteFloat], Field(max_length=MAX_FEATURES)] | None = None
    """The reading's feature values, when the worker records them (``WORKER_RECORD_FEATURES``,
    on by default): what the dashboard charts beside the score. Omitted on the REST paths."""
    hops: Hops
    worker_id: Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128)]


class DeadLetter(_Message):
    """A rejected input and why; a record of the ``deadletter`` stream."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        use_attribute_docstrings=True,
        ser_json_bytes="base64",
        val_json_bytes="base64",
    )

    schema_version: Literal[1] = SCHEMA_VERSION
    reason: RejectReason
    detail: Annotated[str, StringConstraints(max_length=2048)]
    topic: Annotated[str, StringConstraints(max_length=1024)]
    device_id: DeviceId | None = None
    content_type: str | None = None
    payload: Annotated[bytes, Field(max_length=DEADLETTER_PAYLOAD_CAP)]
    """The first :data:`DEADLETTER_PAYLOAD_CAP` bytes of the rejected payload."""
    payload_size: Annotated[int, Field(ge=0)]
    """Size of the whole rejected payload."""
    received_ts: Timestamp
    worker_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]

    @classmethod
    def from_error(
        cls,
        error: ContractError,
        *,
        topic: str,
        payload: bytes,
        received_ts: float,
        worker_id: str,
        content_type: str | None = None,
        device_id: str | None = None,
    ) -> Self:
        """Build the record for ``payload`` rejected with ``error``, capping what is kept."""
        return cls(
            reason=error.reason,
            detail=error.detail[:2048],
            topic=topic[:1024],
            device_id=device_id,
            content_type=content_type,
            payload=bytes(payload[:DEADLETTER_PAYLOAD_CAP]),
            payload_size=len(payload),
            received_ts=received_ts,
            worker_id=worker_id,
        )
