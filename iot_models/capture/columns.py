"""The capture writer's buffer: scored readings kept as columns, encoded as Parquet files.

Why columns and not the readings themselves: a buffer of 10,000 rows that holds on to each
``Reading`` (a pydantic model, its dict, its feature list) and its prediction record keeps
~60,000 objects alive for the garbage collector to walk over and over. Measured on the
``fault-clf`` scoring loop (decode + infer, 100 % capture): +12 us of CPU per reading
holding references, of which ~6 us was the collector; as columns (lists of scalars, plus
the readings' feature lists) there is one object per row left for the collector to walk.
Appending the columns is the hot path: ``iotstream bench capture`` measures it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, Final

from iot_models.capture.layout import Partition, arrow_schema, file_key, partition_of

if TYPE_CHECKING:
    from iot_contract import Reading

__all__ = ["CaptureFile", "Columns"]

# Dictionary encoding and statistics only where they pay: on the float columns (features,
# scores) they cost 3x the encode time for larger files (10,240 rows of fault-clf: 2.65
# -> 0.84 us per row, 120 -> 87 bytes per row, zstd).
_DICTIONARY: Final = ["device_id", "model", "model_version", "variant", "predicted", "label"]
_STATISTICS: Final = ["device_id", "seq", "ts", "received_ts", "score"]
# One C-level getter per source object, transposed with zip: 2.5x faster than a
# comprehension per column.
_READING: Final = attrgetter("device_id", "boot", "seq", "ts", "label", "features")
_RECORD: Final = itemgetter("model", "score", "anomaly")


@dataclass(slots=True)
class CaptureFile:
    """An encoded capture file, ready to write."""

    key: str
    data: bytes
    rows: int


class Columns:
    """Captured rows, column by column (not thread-safe: the writer holds its lock)."""

    __slots__ = (
        "anomaly",
        "boot",
        "device_id",
        "features",
        "label",
        "model",
        "predicted",
        "received_ts",
        "score",
        "seq",
        "ts",
    )

    def __init__(self) -> None:
        self.device_id: list[str] = []
        self.boot: list[int | None] = []
        self.seq: list[int] = []
        self.ts: list[float] = []
        self.received_ts: list[float] = []
        self.model: list[dict[str, str]] = []
        """The records' model reference (one shared dict per model version)."""
        self.score: list[float] = []
        self.anomaly: list[bool] = []
        self.predicted: list[str | None] = []
        self.label: list[str | None] = []
        self.features: list[list[float]] = []
        """The readings' own feature lists (copying them into an ``array('d')`` cost 0.8 us
        per reading; the lists alone are one object per row for the collector)."""

    def __len__(self) -> int:
        return len(self.seq)

    def add(
        self,
        readings: Sequence[Reading],
        received_ts: Sequence[float],
        indices: Sequence[int],
        records: Sequence[dict[str, Any]],
    ) -> None:
        """Append the rows of ``records``, each scoring ``readings[indices[k]]``."""
        rs = [readings[i] for i in indices]
        device_id, boot, seq, ts, label, features = zip(*map(_READING, rs), strict=True)
        model, score, anomaly = zip(*map(_RECORD, records), strict=True)
        self.device_id += device_id
        self.boot += boot
        self.seq += seq
        self.ts += ts
        self.label += label
        self.features += features
        self.model += model
        self.score += score
        self.anomaly += anomaly
        self.predicted += [rec.get("label") for rec in records]
        self.received_ts += [received_ts[i] for i in indices]

    def encode(self, worker_id: str) -> list[CaptureFile]:
        """One Parquet file per (model, hour) of the rows, rows in arrival order."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(
            {
                "device_id": self.device_id,
                "boot": self.boot,
                "seq": self.seq,
                "ts": self.ts,
                "received_ts": self.received_ts,
                "model": [m["name"] for m in self.model],
                "model_version": [m["version"] for m in self.model],
                "variant": [m["variant"] for m in self.model],
                "features": self.features,
                "score": self.score,
                "anomaly": self.anomaly,
                "predicted": self.predicted,
                "label": self.label,
            },
            schema=arrow_schema(),
        )
        groups: dict[Partition, list[int]] = {}
        parts: dict[tuple[str, int], Partition] = {}
        for k, (ref, ts) in enumerate(zip(self.model, self.received_ts, strict=True)):
            hour = (ref["name"], int(ts // 3600))
            part = parts.get(hour)
            if part is None:
                part = parts[hour] = partition_of(ref["name"], ts)
            groups.setdefault(part, []).append(k)
        files: list[CaptureFile] = []
        for part, rows in groups.items():
            subset = table if len(rows) == len(table) else table.take(pa.array(rows))
            out = io.BytesIO()
            pq.write_table(
                subset,
                out,
                compression="zstd",
                use_dictionary=_DICTIONARY,
                write_statistics=_STATISTICS,
            )
            key = file_key(part, worker_id, self.received_ts[rows[0]], len(rows))
            files.append(CaptureFile(key, out.getvalue(), len(rows)))
        return files
