"""Retention of captured readings: whole partitions (hours) older than the setting go.

:func:`expired` is the pure policy; :func:`apply_retention` applies it to a store (the
capture writer's flush thread runs it every few minutes; ``iotstream data retention`` runs
it by hand). A dataset version that names a deleted file can no longer be materialized:
keep the retention longer than the oldest dataset you want to rebuild.
"""

from __future__ import annotations

from collections.abc import Iterable

from iot_models.capture.layout import READINGS_PREFIX, Partition, parse_key
from iot_models.store.objects import ObjectStore

__all__ = ["apply_retention", "expired"]

_HOUR = 3600.0


def expired(partitions: Iterable[Partition], now: float, retention_hours: float) -> list[Partition]:
    """The partitions whose hour ended more than ``retention_hours`` before ``now`` (epoch
    seconds), sorted. An hour ``[start, start + 1 h)`` expires at
    ``start + 1 h + retention``."""
    limit = now - retention_hours * _HOUR
    return sorted({p for p in partitions if p.start + _HOUR < limit})


def apply_retention(
    objects: ObjectStore, now: float, retention_hours: float, *, dry_run: bool = False
) -> dict[Partition, list[str]]:
    """Delete every capture file (all models) in an expired partition.

    Returns:
        The expired partitions with their files (deleted unless ``dry_run``).
    """
    files: dict[Partition, list[str]] = {}
    for key in objects.list(READINGS_PREFIX):
        part = parse_key(key)
        if part is not None:
            files.setdefault(part, []).append(key)
    doomed = {p: files[p] for p in expired(files, now, retention_hours)}
    if not dry_run:
        for keys in doomed.values():
            for key in keys:
                objects.delete(key)
    return doomed
