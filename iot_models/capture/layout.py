"""The capture's Parquet schema and partition layout (one definition; docs/models.md).

Layout under the capture root (a folder or ``s3://bucket/prefix``, see
:func:`iot_models.store.objects.open_objects`), Hive-style so ``pyarrow.dataset`` reads the
date and hour as columns::

    readings/<model>/date=YYYY-MM-DD/hour=HH/<worker id>-<first received ns>-<n>.parquet
    datasets/<dataset id>.json

Partitions are by the hour the worker *received* the reading (UTC): device clocks can be
wrong, the worker's is the one clock all captured rows share. Files are immutable once
written; retention deletes whole partitions (hours) older than the setting.

pyarrow is imported only by :func:`arrow_schema` (the ``capture`` extra): the key
functions work without it.
"""

from __future__ import annotations

import calendar
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "COLUMNS",
    "DATASETS_PREFIX",
    "READINGS_PREFIX",
    "Partition",
    "arrow_schema",
    "file_key",
    "parse_key",
    "partition_of",
]

READINGS_PREFIX: Final = "readings/"
DATASETS_PREFIX: Final = "datasets/"

COLUMNS: Final[tuple[tuple[str, str, str], ...]] = (
    ("device_id", "string", "the device that sent the reading"),
    ("boot", "int64, null", "the reading's boot id; null when the device sends none"),
    ("seq", "int64", "the reading's sequence number"),
    ("ts", "float64", "device clock, seconds since the epoch"),
    ("received_ts", "float64", "when the worker received it (worker clock)"),
    ("model", "string", "the model that scored it (also the partition's first folder)"),
    ("model_version", "string", "the version that scored it"),
    ("variant", "string", "the variant that scored it (fp32, int8-x86_64, ...)"),
    ("features", "list<float64>", "the feature vector, in the model's feature order"),
    ("score", "float64", "the model's anomaly score"),
    ("anomaly", "bool", "score above the model's threshold"),
    ("predicted", "string, null", "a classifier's label (argmax); null for autoencoders"),
    ("label", "string, null", "ground truth sent by the device; null when it sends none"),
)
"""``(name, Arrow type, meaning)`` of every column, in file order."""

_KEY_RE: Final = re.compile(
    r"\Areadings/(?P<model>[A-Za-z0-9_.-]{1,64})/date=(?P<date>\d{4}-\d{2}-\d{2})/"
    r"hour=(?P<hour>\d{2})/(?P<file>[^/]+\.parquet)\Z"
)


def arrow_schema() -> pa.Schema:
    """:data:`COLUMNS` as a pyarrow schema (needs the ``capture`` extra)."""
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "list<float64>": pa.list_(pa.float64()),
    }
    return pa.schema(
        [
            pa.field(name, types[kind.removesuffix(", null")], nullable=kind.endswith(", null"))
            for name, kind, _ in COLUMNS
        ]
    )


@dataclass(frozen=True, slots=True, order=True)
class Partition:
    """One hour of one model's captured readings."""

    model: str
    date: str
    """``YYYY-MM-DD`` (UTC)."""
    hour: int
    """0-23 (UTC)."""

    @property
    def prefix(self) -> str:
        """The key prefix of the partition's files (ends with ``/``)."""
        return f"{READINGS_PREFIX}{self.model}/date={self.date}/hour={self.hour:02d}/"

    @property
    def start(self) -> float:
        """The partition's first second (epoch seconds, UTC)."""
        return float(calendar.timegm(time.strptime(f"{self.date} {self.hour}", "%Y-%m-%d %H")))


def partition_of(model: str, received_ts: float) -> Partition:
    """The partition a reading received at ``received_ts`` belongs to."""
    t = time.gmtime(received_ts)
    return Partition(model, time.strftime("%Y-%m-%d", t), t.tm_hour)


def file_key(partition: Partition, worker_id: str, first_received_ts: float, rows: int) -> str:
    """The key of a new capture file (unique per worker: its first reading's receive time
    in nanoseconds and its row count)."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", worker_id)[:64] or "worker"
    return f"{partition.prefix}{safe}-{int(first_received_ts * 1e9)}-{rows}.parquet"


def parse_key(key: str) -> Partition | None:
    """The partition of a capture file's key; ``None`` for any other key."""
    match = _KEY_RE.match(key)
    if match is None:
        return None
    return Partition(match["model"], match["date"], int(match["hour"]))
