"""Feature drift of the served model versions against their training reference.

Each version's manifest carries the feature profile of its training data
(:class:`iot_models.profile.FeatureProfile`: per feature, quantile bins and the share of
rows in each). The worker counts its live readings into the same bins and, every
``drift_interval`` seconds, compares the two with the population stability index (PSI) per
feature:

* **Hot path** (:meth:`DriftMonitor.observe`, on the worker thread once per scored batch):
  the batch's feature rows join their (model, version)'s pending rows; every
  :data:`BIN_ROWS` rows (a quarter bucket at most), and before each measurement, they
  become one array and one vectorised binning (compare with the padded bin edges, one
  ``bincount``) into the window's open bucket. No I/O, no PSI. Binned per batch, it cost
  ~0.1 ms a batch on a cold CPU, most of it per call rather than per row: a share of the
  worker's CPU per batch that the adaptive batch policy, cutting smaller batches at
  moderate rates, paid more often (docs/streaming.md).
* **Window policy: count-bucketed sliding window.** A version's window is a ring of
  :data:`WINDOW_BUCKETS` buckets of ``drift_window / WINDOW_BUCKETS`` readings each (bin
  counts and feature sums only: bounded memory whatever the rate); when the open bucket
  fills, it joins the ring and the oldest bucket drops out (rows past a full bucket go on
  into the next). So once full the window holds the last ``drift_window * (1 -
  1/WINDOW_BUCKETS)`` to ``drift_window`` readings.
* **Decision with hysteresis** (:class:`DriftDecision`): nothing is measured until the
  window holds ``drift_min_window`` readings (a small sample's PSI is noise); a model
  starts drifting when its largest per-feature PSI reaches ``drift_threshold`` and stops
  only when it falls below :data:`CLEAR_RATIO` times that, so a PSI hovering at the
  threshold does not flap.
* **Reporting** (:class:`DriftObserver`, on its own thread): Prometheus gauges, the newest
  :class:`iot_contract.DriftStatus` per model in Redis, a :class:`iot_contract.DriftEvent`
  and one log line per start or stop. A Redis failure is logged and counted; scoring never
  waits for any of it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry

from inference_worker.drift_sink import DriftSink, DriftSinkError, open_drift_sink
from inference_worker.ratelog import RateLimitedLog
from iot_contract import DriftEvent, DriftStatus, FeatureDrift, Reading, RedisKeys
from iot_metrics import MetricSet, load_catalogue
from iot_models.manifest import MANIFEST_FILE, ModelError, read_manifest
from iot_models.profile import FeatureProfile, psi

if TYPE_CHECKING:
    from inference_worker.settings import WorkerSettings
    from iot_models.core import BatchResult

__all__ = [
    "CLEAR_RATIO",
    "RETIRE_AFTER",
    "WINDOW_BUCKETS",
    "BinnedWindow",
    "DriftDecision",
    "DriftMetrics",
    "DriftMonitor",
    "DriftObserver",
    "DriftReport",
    "manifest_references",
    "open_drift_observer",
]

log = logging.getLogger(__name__)

WINDOW_BUCKETS = 10
"""Buckets per window: the window slides by a tenth of its size at a time."""
BIN_ROWS = 256
"""Pending rows of a version binned at once (fewer when a quarter bucket is smaller)."""
CLEAR_RATIO = 0.8
"""A drifting model stops drifting when its PSI falls below this share of the threshold."""
RETIRE_AFTER = 6
"""A version's window is dropped (gauges removed, no more statuses) after this many
intervals without a reading: it was swapped out or its traffic moved elsewhere."""

VersionKey = tuple[str, str]
"""``(model name, version)``."""
References = Callable[[str, str], FeatureProfile | None]
"""Looks up a version's training reference (``None``: the version has none)."""


class BinnedWindow:
    """Live bin counts of one version's readings over a count-bucketed sliding window.

    Args:
        profile: the version's training reference (bins and shares).
        size: readings in a full window.
        buckets: buckets the window slides by (see the module docstring).
    """

    def __init__(self, profile: FeatureProfile, size: int, buckets: int = WINDOW_BUCKETS) -> None:
        self.profile = profile
        self.n_features = len(profile.edges)
        width = max(len(e) for e in profile.edges) + 1  # bins of the widest feature
        self._width = width
        # Edges as columns padded with +inf (a padded edge never counts): a value's bin is
        # the number of its feature's edges <= it, as in FeatureProfile.counts
        # (searchsorted side="right"). One (rows, features) comparison per edge column:
        # at batches of 64 about 0.25 us per reading, against 0.43 for a searchsorted per
        # feature and 0.47 for one (rows, features, edges) comparison summed over edges.
        padded = np.full((width - 1, self.n_features), np.inf)
        for i, edges in enumerate(profile.edges):
            padded[: len(edges), i] = edges
        self._edge_rows = list(padded)
        self._offsets = np.arange(self.n_features) * width
        self.bucket_size = max(1, size // buckets)
        self._ring: deque[tuple[int, npt.NDArray[np.int64], npt.NDArray[np.float64]]] = deque(
            maxlen=buckets - 1
        )
        self._open_counts = np.zeros(self.n_features * width, dtype=np.int64)
        self._open_sums = np.zeros(self.n_features)
        self._open_n = 0
        self.added = 0
        """Readings added since the window was made (never decreases)."""

    def add(self, x: npt.NDArray[np.float64]) -> None:
        """Count the rows of ``x`` (``(rows, features)``, finite) into the open bucket; a
        bucket that fills joins the ring and the rest go on into the next (every bucket in
        the ring holds exactly ``bucket_size`` readings)."""
        self.added += len(x)
        while len(x):
            room = self.bucket_size - self._open_n
            self._count(x[:room])
            x = x[room:]
            if self._open_n >= self.bucket_size:
                self._ring.append((self._open_n, self._open_counts, self._open_sums))
                self._open_counts = np.zeros_like(self._open_counts)
                self._open_sums = np.zeros_like(self._open_sums)
                self._open_n = 0

    def _count(self, x: npt.NDArray[np.float64]) -> None:
        bins = np.broadcast_to(self._offsets, x.shape).copy()
        for edge_row in self._edge_rows:
            bins += x >= edge_row
        self._open_counts += np.bincount(bins.ravel(), minlength=self._open_counts.size)
        self._open_sums += x.sum(axis=0)
        self._open_n += len(x)

    def snapshot(self) -> tuple[int, npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """``(readings, counts (features, bins), per-feature means)`` over the window."""
        n = self._open_n + sum(b[0] for b in self._ring)
        counts = self._open_counts + sum(
            (b[1] for b in self._ring), np.zeros_like(self._open_counts)
        )
        sums = self._open_sums + sum((b[2] for b in self._ring), np.zeros_like(self._open_sums))
        means = sums / n if n else np.zeros_like(sums)
        return n, counts.reshape(self.n_features, self._width), means

    def psi(self, counts: npt.NDArray[np.int64]) -> list[float]:
        """Per feature, the PSI of ``counts`` (from :meth:`snapshot`) against the reference."""
        return [
            max(0.0, psi(shares, counts[i, : len(shares)]))
            for i, shares in enumerate(self.profile.shares)
        ]


@dataclass
class DriftDecision:
    """Whether a model drifts, with hysteresis (see the module docstring).

    Attributes:
        threshold: PSI at which a model starts drifting.
        min_window: readings the window must hold before anything is decided.
        clear_ratio: it stops drifting below ``threshold * clear_ratio``.
        drifting: the current state.
    """

    threshold: float
    min_window: int
    clear_ratio: float = CLEAR_RATIO
    drifting: bool = False

    def update(self, psi_max: float, window: int) -> bool:
        """Take one measurement; returns whether the state changed."""
        if window < self.min_window:
            return False
        if not self.drifting and psi_max >= self.threshold:
            self.drifting = True
            return True
        if self.drifting and psi_max < self.threshold * self.clear_ratio:
            self.drifting = False
            return True
        return False


@dataclass(frozen=True, slots=True)
class DriftReport:
    """One version's measurement at one interval.

    Attributes:
        status: what goes to Redis.
        event: set when the model started or stopped drifting at this measurement.
        fresh: readings arrived since the previous interval.
    """

    status: DriftStatus
    event: DriftEvent | None
    fresh: bool


@dataclass
class _Tracked:
    window: BinnedWindow
    decision: DriftDecision
    seen_at_last_evaluation: int = 0
    idle_intervals: int = 0
    rows: list[Sequence[float]] = field(default_factory=list)
    """Feature rows observed and not yet binned (under the monitor's lock)."""
    bin_at: int = BIN_ROWS
    """Pending rows that are binned at once."""

    def bin_pending(self) -> None:
        """Bin the pending rows into the window (the caller holds the monitor's lock)."""
        if self.rows:
            self.window.add(np.array(self.rows, dtype=np.float64))
            self.rows = []


@dataclass(eq=False)
class DriftMonitor:
    """The pure part: windows per served version, PSI, decisions. Thread-safe between one
    :meth:`observe` caller (the worker thread) and one :meth:`evaluate` caller.

    Attributes:
        references: looks up a version's training reference; called from :meth:`evaluate`
            only (it may read files), once per version.
        window: ``drift_window`` readings.
        min_window: ``drift_min_window`` readings.
        threshold: ``drift_threshold`` (PSI).
        worker_id: recorded in statuses and events.
    """

    references: References
    _: KW_ONLY
    window: int
    min_window: int
    threshold: float
    worker_id: str
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _tracked: dict[VersionKey, _Tracked] = field(default_factory=dict, init=False, repr=False)
    _pending: set[VersionKey] = field(default_factory=set, init=False, repr=False)
    _untracked: set[VersionKey] = field(default_factory=set, init=False, repr=False)

    def observe(
        self, readings: Sequence[Reading], received_ts: Sequence[float], result: BatchResult
    ) -> None:
        """Count a scored batch's readings into their version's window (a version seen for
        the first time is looked up at the next :meth:`evaluate`; its readings until then
        are not counted). They are binned with the version's next :data:`BIN_ROWS` rows,
        or at the next :meth:`evaluate`, whichever comes first."""
        groups: dict[VersionKey, list[int]] = {}
        if len(result.by_version) == 1:  # one version scored the whole batch: no grouping
            groups[next(iter(result.by_version))] = result.indices
        else:
            for record, index in zip(result.records, result.indices, strict=True):
                model = record["model"]
                groups.setdefault((model["name"], model["version"]), []).append(index)
        for key, indices in groups.items():
            tracked = self._tracked.get(key)
            if tracked is None:
                if key not in self._untracked:
                    with self._lock:
                        self._pending.add(key)
                continue
            rows = [readings[i].features for i in indices]
            if not rows:
                continue
            if len(rows[0]) != tracked.window.n_features:  # the core scored them: all alike
                raise ValueError(
                    f"{key[0]} {key[1]} scores {len(rows[0])} features; its training "
                    f"reference has {tracked.window.n_features}"
                )
            with self._lock:
                tracked.rows += rows
                if len(tracked.rows) >= tracked.bin_at:
                    tracked.bin_pending()

    def evaluate(self, now: float) -> list[DriftReport]:
        """Measure every tracked version whose window holds ``min_window`` readings."""
        self._resolve_pending()
        reports = []
        for key, tracked in list(self._tracked.items()):
            with self._lock:
                tracked.bin_pending()
                added = tracked.window.added
                n, counts, means = tracked.window.snapshot()
            fresh = added > tracked.seen_at_last_evaluation
            tracked.seen_at_last_evaluation = added
            tracked.idle_intervals = 0 if fresh else tracked.idle_intervals + 1
            if tracked.idle_intervals >= RETIRE_AFTER:
                log.info("drift: no readings for %s %s lately; no longer measured", *key)
                del self._tracked[key]
                continue
            if n < self.min_window:
                continue
            reports.append(self._report(key, tracked, n, counts, means, now, fresh))
        return reports

    @property
    def tracked(self) -> list[VersionKey]:
        """The versions with a window now."""
        return sorted(self._tracked)

    def _report(
        self,
        key: VersionKey,
        tracked: _Tracked,
        n: int,
        counts: npt.NDArray[np.int64],
        means: npt.NDArray[np.float64],
        now: float,
        fresh: bool,
    ) -> DriftReport:
        profile = tracked.window.profile
        values = tracked.window.psi(counts)
        worst = int(np.argmax(values))
        psi_max = values[worst]
        changed = tracked.decision.update(psi_max, n)
        features = [
            FeatureDrift(name=name, psi=value, live_mean=float(live), reference_mean=ref)
            for name, value, live, ref in zip(
                profile.feature_names, values, means, profile.means, strict=True
            )
        ]
        status = DriftStatus(
            model=key[0],
            version=key[1],
            ts=now,
            window=n,
            psi_max=psi_max,
            threshold=self.threshold,
            drifting=tracked.decision.drifting,
            features=features,
            worker_id=self.worker_id,
        )
        event = None
        if changed:
            event = DriftEvent(
                model=key[0],
                version=key[1],
                ts=now,
                drifting=tracked.decision.drifting,
                psi_max=psi_max,
                threshold=self.threshold,
                feature=profile.feature_names[worst],
                worker_id=self.worker_id,
            )
        return DriftReport(status, event, fresh)

    def _resolve_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, set()
        for key in sorted(pending):
            try:
                profile = self.references(*key)
            except (ModelError, OSError) as exc:
                log.warning("drift: no reference for %s %s (%s); not measured", *key, exc)
                profile = None
            if profile is None:
                log.info("drift: %s %s has no training reference; not measured", *key)
                self._untracked.add(key)
                continue
            window = BinnedWindow(profile, self.window)
            self._tracked[key] = _Tracked(
                window,
                DriftDecision(self.threshold, self.min_window),
                bin_at=max(1, min(BIN_ROWS, window.bucket_size // 4)),
            )
            log.info(
                "drift: measuring %s %s against %s (%d rows)", *key, profile.source, profile.rows
            )


class DriftMetrics(MetricSet):
    """The drift series on the worker's registry (``inference_worker/drift_metrics.toml``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry, load_catalogue("inference_worker", "drift_metrics.toml"))
        self.feature_psi = self.gauge("feature_psi")
        self.psi_max = self.gauge("psi_max")
        self.drifting = self.gauge("drifting")
        self.window = self.gauge("window")
        self.events = self.counter("events")
        self.errors = self.counter("errors")
        self._shown: dict[VersionKey, tuple[str, ...]] = {}

    def show(self, report: DriftReport) -> None:
        """Set the gauges from one report (and count its event)."""
        s = report.status
        for feature in s.features:
            self.feature_psi.labels(s.model, s.version, feature.name).set(feature.psi)
        self.psi_max.labels(s.model, s.version).set(s.psi_max)
        self.drifting.labels(s.model, s.version).set(1 if s.drifting else 0)
        self.window.labels(s.model, s.version).set(s.window)
        self._shown[(s.model, s.version)] = tuple(f.name for f in s.features)
        if report.event is not None:
            direction = "start" if report.event.drifting else "stop"
            self.events.labels(s.model, s.version, direction).inc()

    def forget(self, keep: set[VersionKey]) -> None:
        """Remove the gauges of versions not in ``keep`` (no longer measured)."""
        for key in [k for k in self._shown if k not in keep]:
            for gauge in (self.psi_max, self.drifting, self.window):
                gauge.remove(*key)
            for feature in self._shown.pop(key):
                self.feature_psi.remove(*key, feature)


class DriftObserver:
    """A :class:`inference_worker.observers.BatchObserver` that measures drift; as a
    context manager it reports every ``interval`` seconds on a daemon thread of its own.

    Args:
        monitor: windows and decisions.
        sink: where statuses and events go.
        metrics: the Prometheus series.
        interval: seconds between measurements.
        clock: epoch seconds for statuses and events.
    """

    def __init__(
        self,
        monitor: DriftMonitor,
        sink: DriftSink,
        metrics: DriftMetrics,
        interval: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.monitor = monitor
        self.sink = sink
        self.metrics = metrics
        self.interval = interval
        self._clock = clock
        self._errors = RateLimitedLog(log, interval=60.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drift", daemon=True)

    def observe(
        self, readings: Sequence[Reading], received_ts: Sequence[float], result: BatchResult
    ) -> None:
        """See :meth:`DriftMonitor.observe`; never raises."""
        try:
            self.monitor.observe(readings, received_ts, result)
        except Exception as exc:  # noqa: BLE001 - a side task's fault must never stop scoring
            self.metrics.errors.labels("observe").inc()
            self._errors.warning("observe", "drift: could not count a batch: %r", exc)

    def report(self) -> list[DriftReport]:
        """Measure, update the gauges, publish; returns the reports (for tests and tools)."""
        reports = self.monitor.evaluate(self._clock())
        self.metrics.forget(set(self.monitor.tracked))
        newest: dict[str, DriftReport] = {}
        for report in reports:
            self.metrics.show(report)
            s, event = report.status, report.event
            if event is not None:
                log.warning(
                    "drift: %s %s %s drifting: PSI %.3f on %s (threshold %.3g, window %d)",
                    s.model,
                    s.version,
                    "started" if event.drifting else "stopped",
                    event.psi_max,
                    event.feature,
                    s.threshold,
                    s.window,
                )
            # one status per model in the hash: the version with readings this interval
            # (the stable one beside a canary has the larger window)
            best = newest.get(s.model)
            if report.fresh and (best is None or s.window > best.status.window):
                newest[s.model] = report
        events = [r.event for r in reports if r.event is not None]
        try:
            self.sink.publish([r.status for r in newest.values()], events)
        except DriftSinkError as exc:
            self.metrics.errors.labels("publish").inc()
            self._errors.warning(
                "publish", "drift: could not publish (%d events lost): %s", len(events), exc
            )
        return reports

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.report()
            except Exception:  # keep measuring; a bug here must not end the thread silently
                self.metrics.errors.labels("report").inc()
                log.exception("drift: measurement failed")

    def __enter__(self) -> DriftObserver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        self.sink.close()


def manifest_references(root: Path) -> References:
    """References read from ``<root>/<name>/<version>/manifest.json`` (a model repository
    or a model store's local cache)."""

    def lookup(name: str, version: str) -> FeatureProfile | None:
        return read_manifest(root / name / version / MANIFEST_FILE).reference

    return lookup


@contextlib.contextmanager
def open_drift_observer(
    settings: WorkerSettings, registry: CollectorRegistry
) -> Iterator[DriftObserver]:
    """The drift observer ``settings`` describe, reporting while the block runs."""
    root = settings.model_cache_dir if settings.model_store else settings.models_dir
    monitor = DriftMonitor(
        manifest_references(root),
        window=settings.drift_window,
        min_window=settings.drift_min_window,
        threshold=settings.drift_threshold,
        worker_id=settings.worker_id,
    )
    sink = open_drift_sink(settings.redis_url, RedisKeys(settings.redis_prefix))
    with DriftObserver(monitor, sink, DriftMetrics(registry), settings.drift_interval) as observer:
        yield observer
