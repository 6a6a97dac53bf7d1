"""Batch observers: what else the worker does with each scored batch (capture for
retraining, drift measurement), beside storing it.

The run loop calls every observer once per batch, on its own thread, right after the
scored batch is on its way to Redis (so no reading waits for an observer): an observer
must return quickly (a buffered append; heavy work such as writing files happens on the
observer's own thread) and must not raise (a fault in a side task never stops scoring).
Observers are context managers owned by the worker's assembly
(:func:`inference_worker.app`), which builds them from the settings in
:func:`open_observers`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from inference_worker.settings import WorkerSettings
    from iot_contract import Reading
    from iot_models.core import BatchResult

__all__ = ["BatchObserver", "open_observers"]


class BatchObserver(Protocol):
    """Sees every scored batch."""

    def observe(
        self, readings: Sequence[Reading], received_ts: Sequence[float], result: BatchResult
    ) -> None:
        """One scored batch: ``readings`` (decoded, in order) and when each was received;
        ``result.records[k]`` scored ``readings[result.indices[k]]``. Must be quick and
        must not raise."""
        ...


def open_observers(
    settings: WorkerSettings, registry: CollectorRegistry, stack: contextlib.ExitStack
) -> list[BatchObserver]:
    """The observers ``settings`` switch on, each entered on ``stack`` (closed with it)."""
    observers: list[BatchObserver] = []
    # capture of scored readings for retraining (iot_models.capture; pyarrow only if on)
    if settings.capture_url and settings.capture_rate > 0:
        from iot_models.capture.writer import CaptureConfig, CaptureWriter
        from iot_models.store.objects import open_objects

        capture = CaptureConfig(
            rate=settings.capture_rate,
            flush_rows=settings.capture_flush_rows,
            flush_seconds=settings.capture_flush_seconds,
            queue_batches=settings.capture_queue_batches,
            retention_hours=settings.capture_retention_hours or None,
        )
        objects = stack.enter_context(contextlib.closing(open_objects(settings.capture_url)))
        writer = CaptureWriter(objects, capture, worker_id=settings.worker_id, registry=registry)
        observers.append(stack.enter_context(writer))
    # feature drift against the served versions' training references (drift.py)
    if settings.drift_enabled:
        from inference_worker.drift import open_drift_observer

        observers.append(stack.enter_context(open_drift_observer(settings, registry)))
    return observers
