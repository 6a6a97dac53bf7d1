"""The capture writer: a sample of scored readings, buffered on the scoring thread and
written as Parquet files by a thread of its own (docs/models.md, "Capture").

Hot path (:meth:`CaptureWriter.observe`, on the worker's run-loop thread): per reading one
sampling test and one tuple appended to a list; per batch one lock. Everything else
(columns, Parquet, the store) happens on the flush thread. Measured with
``iotstream bench capture``: figures in docs/models.md.

Sampling is deterministic per reading: a reading is kept when
``crc32(seq, crc32(device_id)) < rate * 2**32``, so a redelivered reading (same device and
sequence number) is sampled the same way on any worker, and a sample of ``rate`` keeps
whole-fleet coverage (every device contributes about ``rate`` of its readings). At
``rate`` 1.0 the test is skipped.

Hand-off and overflow: the buffer is cut every ``flush_rows`` rows or ``flush_seconds``
after its first row, and the cut batch joins a queue bounded at ``queue_batches``. When the
store is slow or unreachable the queue fills; then the **oldest batch is dropped**
(``worker_capture_dropped_total`` counts its rows, one log line per 10 s at most): capture
is best effort and scoring never waits for it. A failed write is retried with backoff
(1 s doubling to 30 s) while new batches queue behind it. Memory bound: ``(queue_batches
+ 2) * flush_rows`` rows (queue, the batch being written, the open buffer).
"""

from __future__ import annotations

import io
import logging
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from iot_models.capture.layout import Partition, arrow_schema, file_key, partition_of
from iot_models.capture.retention import apply_retention
from iot_models.manifest import ModelError
from iot_models.store.base import StoreError
from iot_models.store.objects import ObjectStore

if TYPE_CHECKING:
    from iot_contract import Reading
    from iot_models.core import BatchResult

__all__ = ["CaptureConfig", "CaptureError", "CaptureMetrics", "CaptureWriter", "sampled"]

log = logging.getLogger(__name__)

INSTALL_HINT: Final = "pip install 'iotstream[capture]'"

_Row = tuple["Reading", float, dict[str, Any]]
_SEQ_MASK: Final = (1 << 64) - 1
_DEVICE_CACHE: Final = 100_000  # device ids whose crc is kept (cleared beyond: a bound)
# Dictionary encoding and statistics only where they pay: on the float columns (features,
# scores) they cost 3x the encode time for larger files (10,240 rows of fault-clf: 2.65
# -> 0.84 us per row, 120 -> 87 bytes per row, zstd).
_DICTIONARY_COLUMNS: Final = [
    "device_id",
    "model",
    "model_version",
    "variant",
    "predicted",
    "label",
]
_STATISTICS_COLUMNS: Final = ["device_id", "seq", "ts", "received_ts", "score"]


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


class CaptureMetrics:
    """The writer's Prometheus metrics (on the worker's registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.rows = Counter("worker_capture_rows", "Captured rows written", registry=r)
        self.files = Counter("worker_capture_files", "Capture files written", registry=r)
        self.bytes = Counter("worker_capture_bytes", "Bytes of capture files written", registry=r)
        self.failures = Counter(
            "worker_capture_write_failures", "Capture file writes that failed", registry=r
        )
        self.dropped = Counter(
            "worker_capture_dropped",
            "Sampled rows dropped (queue full while the store was slow, or close timed out)",
            registry=r,
        )
        self.queued = Gauge(
            "worker_capture_queue_batches", "Cut buffers waiting for the store", registry=r
        )


@dataclass(slots=True)
class _File:
    key: str
    data: bytes
    rows: int


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
        self._buffer: list[_Row] = []
        self._started = 0.0
        self._queue: deque[list[_Row]] = deque()
        self._busy = False
        self._closing = False
        self._close_deadline = 0.0
        self._retry: list[_File] | None = None
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
            if self._all:
                rows = [
                    (readings[i], received_ts[i], rec)
                    for i, rec in zip(result.indices, records, strict=True)
                ]
            else:
                th = self._threshold
                crc = zlib.crc32
                devices = self._device_crc
                if len(devices) > _DEVICE_CACHE:
                    devices.clear()
                rows = []
                for i, rec in zip(result.indices, records, strict=True):
                    r = readings[i]
                    dev = devices.get(r.device_id)
                    if dev is None:
                        dev = devices[r.device_id] = crc(r.device_id.encode())
                    if crc((r.seq & _SEQ_MASK).to_bytes(8, "little"), dev) < th:
                        rows.append((r, received_ts[i], rec))
                if not rows:
                    return
            with self._cond:
                buf = self._buffer
                if not buf:
                    self._started = time.monotonic()
                buf += rows
                if len(buf) >= self.config.flush_rows:
                    self._cut()
        except Exception:  # a side task never stops scoring
            log.exception("capture: a batch could not be buffered (skipped)")

    def _cut(self) -> None:
        """Hand the buffer to the queue (lock held); drop the oldest batch when full."""
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        if len(self._queue) >= self.config.queue_batches:
            self._drop(self._queue.popleft(), "the capture store is slow or unreachable")
        self._queue.append(batch)
        self.metrics.queued.set(len(self._queue))
        self._cond.notify()

    def _drop(self, rows: Sequence[object], why: str) -> None:
        self.metrics.dropped.inc(len(rows))
        now = time.monotonic()
        if now - self._last_log >= 10.0:
            self._last_log = now
            log.warning("capture: dropped %d sampled rows: %s", len(rows), why)

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
                if self._buffer and (self._closing or now - self._started >= cfg.flush_seconds):
                    self._cut()
                if self._closing and now >= self._close_deadline:
                    self._give_up()
                    return
                if self._closing and not self._queue and self._retry is None:
                    return
                batch: list[_Row] | None = None
                if self._retry is None and self._queue:
                    batch = self._queue.popleft()
                    self.metrics.queued.set(len(self._queue))
                retry_due = self._retry is not None and now >= self._retry_at
                retention_due = cfg.retention_hours is not None and now >= self._next_retention
                if batch is None and not retry_due and not retention_due:
                    self._cond.wait(self._timeout(now))
                    continue
                self._busy = True
            try:
                if batch is not None:
                    self._write(self._encode(batch))
                elif retry_due and self._retry is not None:
                    self._write(self._retry)
                self._retention()
            except Exception:  # never let the thread die: capture would stop silently
                log.exception("capture: the flush thread failed on a batch (dropped)")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _timeout(self, now: float) -> float:
        cfg = self.config
        waits = [1.0]
        if cfg.retention_hours is not None:
            waits.append(max(0.0, self._next_retention - now))
        if self._buffer:
            waits.append(max(0.0, self._started + cfg.flush_seconds - now))
        if self._retry is not None:
            waits.append(max(0.0, self._retry_at - now))
        if self._closing:
            waits.append(max(0.0, self._close_deadline - now))
        return max(0.001, min(waits))

    def _give_up(self) -> None:
        """Close timed out: count what is left as dropped (lock held)."""
        left = [row for batch in self._queue for row in batch]
        self._queue.clear()
        if self._retry is not None:
            self.metrics.dropped.inc(sum(f.rows for f in self._retry))
            self._retry = None
        if left:
            self._drop(left, "closing, and the capture store did not take them in time")

    def _encode(self, batch: list[_Row]) -> list[_File]:
        """One Parquet file per (model, hour) in the batch."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        groups: dict[Partition, list[_Row]] = {}
        hours: dict[tuple[str, int], Partition] = {}
        for row in batch:
            name = row[2]["model"]["name"]
            hour = int(row[1] // 3600)
            part = hours.get((name, hour))
            if part is None:
                part = hours[(name, hour)] = partition_of(name, row[1])
            groups.setdefault(part, []).append(row)
        schema = arrow_schema()
        files: list[_File] = []
        for part, rows in groups.items():
            refs = [rec["model"] for _, _, rec in rows]
            columns = {
                "device_id": [r.device_id for r, _, _ in rows],
                "boot": [r.boot for r, _, _ in rows],
                "seq": [r.seq for r, _, _ in rows],
                "ts": [r.ts for r, _, _ in rows],
                "received_ts": [ts for _, ts, _ in rows],
                "model": [ref["name"] for ref in refs],
                "model_version": [ref["version"] for ref in refs],
                "variant": [ref["variant"] for ref in refs],
                "features": [r.features for r, _, _ in rows],
                "score": [rec["score"] for _, _, rec in rows],
                "anomaly": [rec["anomaly"] for _, _, rec in rows],
                "predicted": [rec.get("label") for _, _, rec in rows],
                "label": [r.label for r, _, _ in rows],
            }
            out = io.BytesIO()
            pq.write_table(
                pa.table(columns, schema=schema),
                out,
                compression="zstd",
                use_dictionary=_DICTIONARY_COLUMNS,
                write_statistics=_STATISTICS_COLUMNS,
            )
            key = file_key(part, self.worker_id, rows[0][1], len(rows))
            files.append(_File(key, out.getvalue(), len(rows)))
        return files

    def _write(self, files: list[_File]) -> None:
        m = self.metrics
        for n, f in enumerate(files):
            try:
                self.objects.put(f.key, f.data)
            except (StoreError, OSError) as exc:
                m.failures.inc()
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
            m.files.inc()
            m.rows.inc(f.rows)
            m.bytes.inc(len(f.data))
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
