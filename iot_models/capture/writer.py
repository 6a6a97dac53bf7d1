"""The capture writer: a sample of scored readings, buffered on the scoring thread and
written as Parquet files by a thread of its own (docs/models.md, "Capture").

Hot path (:meth:`CaptureWriter.observe`, on the worker's run-loop thread): per reading one
sampling test and its fields appended to the buffer's columns
(:mod:`iot_models.capture.columns`); per batch one lock. Parquet and the store happen on
the flush thread. Measured with ``iotstream bench capture``: figures in docs/models.md.

Sampling is deterministic per reading: a reading is kept when
``crc32(seq, crc32(device_id)) < rate * 2**32``, so a redelivered reading (same device and
sequence number) is sampled the same way on any worker, and a sample of ``rate`` keeps
whole-fleet coverage (every device contributes about ``rate`` of its readings). At
``rate`` 1.0 the test is skipped.

Hand-off and overflow: the buffer is cut every ``flush_rows`` rows or ``flush_seconds``
after its first row, and the cut batch joins a queue bounded at ``queue_batches``. When the
store is slow or unreachable the queue fills; then the **oldest batch is dropped**
(``iotstream_worker_capture_dropped_total`` counts its rows, one log line per 10 s at
most): capture is best effort and scoring never waits for it. A failed write is retried
with backoff (1 s doubling to 30 s) while new batches queue behind it; one the store
refuses (credentials, no such bucket) drops that file instead (counted). Memory bound:
``(queue_batches + 2) * flush_rows`` rows (queue, the batch being written, the open
buffer).
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry

from iot_metrics import MetricSet, load_catalogue
from iot_models.capture.columns import CaptureFile, Columns
from iot_models.capture.retention import apply_retention
from iot_models.manifest import ModelError
from iot_models.store.errors import StoreAuthError, StoreError, StoreNotFoundError
from iot_models.store.objects import ObjectStore

if TYPE_CHECKING:
    from iot_contract import Reading
    from iot_models.core import BatchResult

__all__ = ["CaptureConfig", "CaptureError", "CaptureMetrics", "CaptureWriter", "sampled"]

log = logging.getLogger(__name__)

INSTALL_HINT: Final = "pip install 'iotstream[capture]'"

_SEQ_MASK: Final = (1 << 64) - 1
_DEVICE_CACHE: Final = 100_000  # device ids whose crc is kept (cleared beyond: a bound)


class CaptureError(ModelError):
    """Capture cannot start (pyarrow missing, bad configuration)."""


def require_pyarrow() -> None:
    """Raise :class:`CaptureError` saying how to install pyarrow when it is missing."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise CaptureError(
            f"capture is switched on but pyarrow is not installed: {INSTALL_HINT} "
            "(or switch capture off)"
        ) from exc


def sampled(device_id: str, seq: int, rate: float) -> bool:
    """Whether the reading ``(device_id, seq)`` is in a ``rate`` sample (the writer's
    test, deterministic across processes)."""
    code = zlib.crc32((seq & _SEQ_MASK).to_bytes(8, "little"), zlib.crc32(device_id.encode()))
    return code < int(rate * 2**32)


@dataclass(frozen=True, slots=True)
class CaptureConfig:
    """How a :class:`CaptureWriter` samples, flushes and retains (the worker fills it from
    its ``capture_*`` settings)."""

    rate: float = 1.0
    """Share of scored readings kept, 0.0-1.0."""
    flush_rows: int = 10_000
    """A buffer is written once it holds this many rows ..."""
    flush_seconds: float = 60.0
    """... or this many seconds after its first row."""
    queue_batches: int = 4
    """Cut buffers waiting for the store; beyond it the oldest is dropped."""
    retention_hours: float | None = 168.0
    """Partitions whose hour ended longer ago are deleted; ``None`` keeps everything."""
    retention_every_s: float = 300.0
    """Seconds between retention passes."""
    close_timeout: float = 10.0
    """On close, seconds allowed to write what is buffered before it is dropped."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise CaptureError(f"capture rate {self.rate} is not between 0 and 1")
        if self.flush_rows < 1 or self.queue_batches < 1 or self.flush_seconds <= 0:
            raise CaptureError("flush_rows, queue_batches and flush_seconds must be positive")


class CaptureMetrics(MetricSet):
    """The writer's Prometheus metrics (``iot_models/capture/metrics.toml``, on the worker's
    registry), by key, e.g. ``metrics.counter("rows")``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry, load_catalogue("iot_models.capture"))


class CaptureWriter:
    """Samples scored readings into Parquet files in ``objects`` (a context manager: the
    flush thread runs between enter and exit; exit writes what is buffered).

    Args:
        objects: the capture store.
        config: sampling, flushing and retention.
        worker_id: in every file's name (files of different workers never clash).
        registry: where the metrics go (a private registry when ``None``).
        clock: epoch seconds, for retention (a parameter so tests control it).

    Raises:
        CaptureError: pyarrow is missing.
    """

    def __init__(
        self,
        objects: ObjectStore,
        config: CaptureConfig,
        *,
        worker_id: str,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        require_pyarrow()
        self.objects = objects
        self.config = config
        self.worker_id = worker_id
        self.metrics = CaptureMetrics(registry if registry is not None else CollectorRegistry())
        self._clock = clock
        self._all = config.rate >= 1.0
        self._threshold = int(config.rate * 2**32)
        self._device_crc: dict[str, int] = {}  # crc32(device_id), the sample test's half
        self._cond = threading.Condition()
        self._buffer = Columns()
        self._started = 0.0
        self._queue: deque[Columns] = deque()
        self._busy = False
        self._closing = False
        self._close_deadline = 0.0
        self._retry: list[CaptureFile] | None = None
        self._retry_at = 0.0
        self._backoff = 1.0
        self._next_retention = time.monotonic()
        self._last_log = -1e9
        self._thread = threading.Thread(target=self._run, name="capture-writer", daemon=True)

    # --- the hot path (scoring thread) -----------------------------------------------

    def observe(
        self, readings: Sequence[Reading], received_ts: Sequence[float], result: BatchResult
    ) -> None:
        """Sample a scored batch into the buffer (see the module docstring). Never raises."""
        try:
            records = result.records
            if not records:
                return
            indices: Sequence[int] = result.indices
            if not self._all:
                th = self._threshold
                crc = zlib.crc32
                devices = self._device_crc
                if len(devices) > _DEVICE_CACHE:
                    devices.clear()
                keep = []
                for k, i in enumerate(indices):
                    r = readings[i]
                    dev = devices.get(r.device_id)
                    if dev is None:
                        dev = devices[r.device_id] = crc(r.device_id.encode())
                    if crc((r.seq & _SEQ_MASK).to_bytes(8, "little"), dev) < th:
                        keep.append(k)
                if not keep:
                    return
                indices = [indices[k] for k in keep]
                records = [records[k] for k in keep]
            with self._cond:
                buf = self._buffer
                if not len(buf):  # the flush thread's deadline starts now
                    self._started = time.monotonic()
                    self._cond.notify()
                buf.add(readings, received_ts, indices, records)
                if len(buf) >= self.config.flush_rows:
                    self._cut()
        except Exception:  # a side task never stops scoring
            log.exception("capture: a batch could not be buffered (skipped)")

    def _cut(self) -> None:
        """Hand the buffer to the queue (lock held); drop the oldest batch when full."""
        batch, self._buffer = self._buffer, Columns()
        if not len(batch):
            return
        if len(self._queue) >= self.config.queue_batches:
            self._drop(len(self._queue.popleft()), "the capture store is slow or unreachable")
        self._queue.append(batch)
        self.metrics.gauge("queued").set(len(self._queue))
        self._cond.notify()

    def _drop(self, rows: int, why: str) -> None:
        self.metrics.counter("dropped").inc(rows)
        now = time.monotonic()
        if now - self._last_log >= 10.0:
            self._last_log = now
            log.warning("capture: dropped %d sampled rows: %s", rows, why)

    # --- the flush thread --------------------------------------------------------------

    def __enter__(self) -> CaptureWriter:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Write what is buffered (within ``close_timeout``, then drop the rest), stop."""
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._close_deadline = time.monotonic() + self.config.close_timeout
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(self.config.close_timeout + 5.0)

    def flush(self, timeout: float = 10.0) -> bool:
        """Cut the buffer now and wait until everything cut is written (or given up);
        ``False`` when ``timeout`` passed first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cut()
            while self._queue or self._busy or self._retry is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            with self._cond:
                cfg = self.config
                if len(self._buffer) and (
                    self._closing or now - self._started >= cfg.flush_seconds
                ):
                    self._cut()
                if self._closing and now >= self._close_deadline:
                    self._give_up()
                    return
                if self._closing and not self._queue and self._retry is None:
                    return
                batch: Columns | None = None
                if self._retry is None and self._queue:
                    batch = self._queue.popleft()
                    self.metrics.gauge("queued").set(len(self._queue))
                retry_due = self._retry is not None and now >= self._retry_at
                retention_due = cfg.retention_hours is not None and now >= self._next_retention
                if batch is None and not retry_due and not retention_due:
                    self._cond.wait(self._timeout(now))
                    continue
                self._busy = True
            try:
                if batch is not None:
                    self._write(batch.encode(self.worker_id))
                elif retry_due and self._retry is not None:
                    self._write(self._retry)
                self._retention()
            except Exception:  # never let the thread die: capture would stop silently
                log.exception("capture: the flush thread failed on a batch (dropped)")
                if batch is not None and self._retry is None:
                    self.metrics.counter("dropped").inc(len(batch))
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _timeout(self, now: float) -> float:
        cfg = self.config
        waits = [1.0]
        if cfg.retention_hours is not None:
            waits.append(max(0.0, self._next_retention - now))
        if len(self._buffer):
            waits.append(max(0.0, self._started + cfg.flush_seconds - now))
        if self._retry is not None:
            waits.append(max(0.0, self._retry_at - now))
        if self._closing:
            waits.append(max(0.0, self._close_deadline - now))
        return max(0.001, min(waits))

    def _give_up(self) -> None:
        """Close timed out: count what is left as dropped (lock held)."""
        left = sum(len(batch) for batch in self._queue)
        self._queue.clear()
        if self._retry is not None:
            self.metrics.counter("dropped").inc(sum(f.rows for f in self._retry))
            self._retry = None
        if left:
            self._drop(left, "closing, and the capture store did not take them in time")

    def _write(self, files: list[CaptureFile]) -> None:
        m = self.metrics
        for n, f in enumerate(files):
            try:
                self.objects.put(f.key, f.data)
            except (StoreAuthError, StoreNotFoundError) as exc:  # refused: no retry
                m.counter("failures").inc()
                self._drop(f.rows, f"the capture store refused {f.key}: {exc}")
                continue
            except (StoreError, OSError) as exc:  # may pass later: retry
                m.counter("failures").inc()
                self._retry = files[n:]
                self._retry_at = time.monotonic() + self._backoff
                now = time.monotonic()
                if now - self._last_log >= 10.0:
                    self._last_log = now
                    log.warning(
                        "capture: writing %s to %s failed (retry in %.0f s): %s",
                        f.key,
                        self.objects.url,
                        self._backoff,
                        exc,
                    )
                self._backoff = min(self._backoff * 2.0, 30.0)
                return
            m.counter("files").inc()
            m.counter("rows").inc(f.rows)
            m.counter("bytes").inc(len(f.data))
        self._retry = None
        self._backoff = 1.0

    def _retention(self) -> None:
        hours = self.config.retention_hours
        now = time.monotonic()
        if hours is None or now < self._next_retention:
            return
        self._next_retention = now + self.config.retention_every_s
        try:
            gone = apply_retention(self.objects, self._clock(), hours)
        except (StoreError, OSError) as exc:
            log.warning("capture: retention pass on %s failed: %s", self.objects.url, exc)
            return
        if gone:
            log.info(
                "capture: retention deleted %d partitions (%d files) older than %s h",
                len(gone),
                sum(len(keys) for keys in gone.values()),
                hours,
            )
