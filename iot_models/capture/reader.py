"""Reading captured readings back: which partitions and files a model has, and their rows.

Selections are by whole partitions (hours, by the worker's receive clock): a window
``[since, until)`` takes every hour that overlaps it. pyarrow (the ``capture`` extra) is
imported only by the functions that read Parquet.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from iot_models.capture.layout import READINGS_PREFIX, Partition, arrow_schema, parse_key
from iot_models.store.objects import ObjectStore

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "PartitionInfo",
    "TimeBound",
    "epoch",
    "list_files",
    "list_partitions",
    "partition_infos",
    "read_file",
    "read_table",
]

TimeBound = float | datetime | None
"""A window bound: epoch seconds, an aware ``datetime`` (naive ones are taken as UTC), or
``None`` (open)."""

HOUR = 3600.0


def epoch(bound: float | datetime) -> float:
    """``bound`` as epoch seconds (a naive ``datetime`` is UTC)."""
    if isinstance(bound, datetime):
        if bound.tzinfo is None:
            bound = bound.replace(tzinfo=UTC)
        return bound.timestamp()
    return float(bound)


def _in_window(partition: Partition, since: TimeBound, until: TimeBound) -> bool:
    start = partition.start
    if since is not None and start + HOUR <= epoch(since):
        return False
    return until is None or start < epoch(until)


def list_files(
    objects: ObjectStore, model: str, since: TimeBound = None, until: TimeBound = None
) -> list[str]:
    """Keys of ``model``'s capture files in the hours overlapping ``[since, until)``, sorted
    (other objects under the model's folder are ignored)."""
    keys = objects.list(f"{READINGS_PREFIX}{model}/")
    return [
        key
        for key in keys
        if (part := parse_key(key)) is not None
        and part.model == model
        and _in_window(part, since, until)
    ]


def list_partitions(
    objects: ObjectStore, model: str, since: TimeBound = None, until: TimeBound = None
) -> list[Partition]:
    """``model``'s partitions (hours with at least one file) overlapping ``[since, until)``,
    oldest first."""
    found = {parse_key(key) for key in list_files(objects, model, since, until)}
    return sorted(p for p in found if p is not None)


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """A partition with its files' count, rows (from the keys) and bytes."""

    partition: Partition
    files: int
    rows: int
    bytes: int


def _rows_of(key: str) -> int:
    """The row count a capture file's key ends with (``...-<rows>.parquet``)."""
    stem = key.rsplit("/", 1)[-1].removesuffix(".parquet")
    try:
        return int(stem.rsplit("-", 1)[-1])
    except ValueError:
        return 0


def partition_infos(objects: ObjectStore, model: str | None = None) -> list[PartitionInfo]:
    """Every partition (of ``model``, or of all models) with its size, from one listing."""
    prefix = READINGS_PREFIX if model is None else f"{READINGS_PREFIX}{model}/"
    totals: dict[Partition, list[int]] = {}
    for key, size in objects.sizes(prefix).items():
        part = parse_key(key)
        if part is None:
            continue
        entry = totals.setdefault(part, [0, 0, 0])
        entry[0] += 1
        entry[1] += _rows_of(key)
        entry[2] += size
    return [PartitionInfo(p, f, r, b) for p, (f, r, b) in sorted(totals.items())]


def read_file(data: bytes, columns: Iterable[str] | None = None) -> pa.Table:
    """One capture file's rows (the :func:`~iot_models.capture.layout.arrow_schema`
    columns, or only ``columns``)."""
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data), columns=None if columns is None else list(columns))


def read_table(
    objects: ObjectStore, keys: Iterable[str], columns: Iterable[str] | None = None
) -> pa.Table:
    """The rows of the capture files ``keys``, in that order, as one table with the
    documented schema (or only ``columns``).

    Raises:
        ObjectNotFoundError: a file is missing.
    """
    import pyarrow as pa

    wanted = None if columns is None else list(columns)
    schema = arrow_schema()
    if wanted is not None:
        schema = pa.schema([schema.field(name) for name in wanted])
    tables = [read_file(objects.get(key), wanted).cast(schema) for key in keys]
    if not tables:
        return schema.empty_table()
    return pa.concat_tables(tables)
