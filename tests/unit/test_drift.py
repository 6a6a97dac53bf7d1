"""Drift measurement (inference_worker.drift): window, PSI, hysteresis, reports, gauges and
the memory sink, on injected data with an injected clock (no threads, no sleeps)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from prometheus_client import CollectorRegistry

from inference_worker.drift import (
    RETIRE_AFTER,
    BinnedWindow,
    DriftDecision,
    DriftMetrics,
    DriftMonitor,
    DriftObserver,
)
from inference_worker.drift_sink import MemoryDriftSink
from iot_contract import Reading
from iot_models.core import InferenceCore
from iot_models.model import ModelInfo, Output
from iot_models.profile import FeatureProfile, psi
from iot_models.sensors import FEATURE_NAMES, make_dataset

TEMP = FEATURE_NAMES.index("bearing_temp_c")


class _Echo:
    """A model with a fixed identity that scores every row 0 (the monitor reads only the
    readings and which version scored them)."""

    def __init__(self, name: str, version: str) -> None:
        self._info = ModelInfo(name, version, "fp32", "autoencoder", FEATURE_NAMES)

    @property
    def info(self) -> ModelInfo:
        return self._info

    def predict(self, features: npt.NDArray[np.float32]) -> list[Output]:
        return [Output(score=0.0, anomaly=False) for _ in range(len(features))]


@pytest.fixture(scope="module")
def reference() -> FeatureProfile:
    x, y = make_dataset(20_000, 101)
    return FeatureProfile.from_samples(x[y == 0], FEATURE_NAMES, source="test", bins=5)


@pytest.fixture(scope="module")
def healthy() -> npt.NDArray[np.float32]:
    """Normal rows of another fleet of 256 machines (what a live fleet without drift sends)."""
    x, y = make_dataset(30_000, 303)
    rows: npt.NDArray[np.float32] = x[y == 0]
    return rows


def _readings(rows: npt.NDArray[np.float32], model: str | None = None) -> list[Reading]:
    return [
        Reading(device_id=f"d-{i}", seq=i, ts=1.0, features=row.tolist(), model=model)
        for i, row in enumerate(rows)
    ]


def _feed(
    target: DriftMonitor | DriftObserver,
    core: InferenceCore,
    rows: npt.NDArray[np.float32],
    batch: int = 64,
) -> None:
    for start in range(0, len(rows), batch):
        readings = _readings(rows[start : start + batch])
        result = core.infer(readings, 1.0)
        target.observe(readings, [1.0] * len(readings), result)


def _core(*versions: tuple[str, str]) -> InferenceCore:
    models = {name: _Echo(name, version) for name, version in versions}
    return InferenceCore(models, default_model=versions[0][0], worker_id="w-1")


def _monitor(reference: FeatureProfile, **options: float) -> DriftMonitor:
    def lookup(name: str, version: str) -> FeatureProfile | None:
        return reference if version == "1" else None

    settings = {"window": 2000, "min_window": 500, "threshold": 0.25, **options}
    return DriftMonitor(
        lookup,
        window=int(settings["window"]),
        min_window=int(settings["min_window"]),
        threshold=settings["threshold"],
        worker_id="w-1",
    )


def test_window_bins_agree_with_the_profile(reference: FeatureProfile) -> None:
    rng = np.random.default_rng(1)
    drawn, _ = make_dataset(3000, 9)
    x = drawn.astype(np.float64)
    x[:10] *= 100.0  # beyond the training range: the outer bins
    x[10:20, 0] = reference.edges[0][1]  # exactly on an edge: the bin above it
    x[20:30] = rng.uniform(-1e6, 1e6, (10, x.shape[1]))
    uneven = FeatureProfile(  # a feature with fewer bins than the others
        feature_names=("a", "b"),
        edges=((0.0,), (1.0, 2.0, 3.0)),
        shares=((0.5, 0.5), (0.25, 0.25, 0.25, 0.25)),
        means=(0.0, 2.0),
        rows=4,
        source="test",
    )
    for profile, data in ((reference, x), (uneven, rng.uniform(-1.0, 4.0, (500, 2)))):
        window = BinnedWindow(profile, size=10_000)
        for start in range(0, len(data), 64):
            window.add(data[start : start + 64])
        n, counts, means = window.snapshot()
        assert n == len(data)
        expected = profile.counts(data)
        for i, feature in enumerate(expected):
            assert counts[i, : len(feature)].tolist() == feature.tolist()
            assert counts[i, len(feature) :].sum() == 0
        assert np.allclose(means, data.mean(axis=0))
        assert window.psi(counts) == pytest.approx(
            [psi(s, c) for s, c in zip(profile.shares, expected, strict=True)]
        )


def test_window_slides_by_buckets_and_stays_bounded(reference: FeatureProfile) -> None:
    window = BinnedWindow(reference, size=1000)  # buckets of 100 readings
    old = np.zeros((50, len(FEATURE_NAMES)))
    new = np.full((50, len(FEATURE_NAMES)), 1e9)
    sizes = []
    for _ in range(40):
        window.add(old)
        sizes.append(window.snapshot()[0])
    assert max(sizes) <= 1000
    for _ in range(40):
        window.add(new)
    n, counts, means = window.snapshot()
    assert 900 <= n <= 1000
    assert window.added == 4000
    assert (counts[:, 0] == 0).all()  # every old reading (bin 0) has left the window
    assert (means == 1e9).all()


def test_rows_past_a_full_bucket_go_on_into_the_next(reference: FeatureProfile) -> None:
    window = BinnedWindow(reference, size=1000)  # buckets of 100 readings
    rows = np.zeros((64, len(FEATURE_NAMES)))
    sizes = []
    for _ in range(40):  # 64 rows at a time: most adds cross a bucket's end
        window.add(rows)
        sizes.append(window.snapshot()[0])
    assert sizes[:2] == [64, 128]
    assert max(sizes) < 1000
    assert 900 <= sizes[-1] < 1000
    assert window.added == 40 * 64
    assert [b[0] for b in window._ring] == [100] * 9


def _state(decision: DriftDecision) -> bool:
    return decision.drifting


def test_decision_has_hysteresis_and_a_minimum_window() -> None:
    d = DriftDecision(threshold=0.25, min_window=500)
    assert not d.update(0.9, window=499)  # too few readings: nothing decided
    assert d.drifting is False
    assert d.update(0.25, window=500)
    assert _state(d)
    changes = [d.update(p, 1000) for p in (0.3, 0.22, 0.2, 0.24, 0.26)]
    assert changes == [False] * 5  # between 0.8 x threshold and threshold: no flapping
    assert d.update(0.19, 1000)
    assert not d.drifting
    assert [d.update(p, 1000) for p in (0.21, 0.249)] == [False, False]


def test_healthy_fleet_stays_below_an_offset_is_raised_and_cleared(
    reference: FeatureProfile, healthy: npt.NDArray[np.float32]
) -> None:
    monitor = _monitor(reference)
    core = _core(("fault-clf", "1"))
    _feed(monitor, core, healthy[:64])
    assert monitor.evaluate(0.0) == []  # first sight: the reference is looked up
    assert monitor.tracked == [("fault-clf", "1")]
    _feed(monitor, core, healthy[64:400])
    assert monitor.evaluate(1.0) == []  # fewer than min_window readings: not measured
    _feed(monitor, core, healthy[400:3000])
    (report,) = monitor.evaluate(2.0)
    assert report.status.psi_max < 0.1
    assert not report.status.drifting
    assert report.event is None
    assert report.fresh
    assert [f.name for f in report.status.features] == list(FEATURE_NAMES)

    drifted = healthy[3000:6000].copy()
    drifted[::3, TEMP] += 15.0  # a third of the readings: a bearing sensor offset
    _feed(monitor, core, drifted)
    (report,) = monitor.evaluate(3.0)
    assert report.status.drifting
    assert report.status.psi_max >= 0.25
    assert report.event is not None
    assert report.event.drifting
    assert report.event.feature == "bearing_temp_c"
    assert report.event.ts == 3.0
    temp = report.status.features[TEMP]
    assert temp.psi == report.status.psi_max
    assert temp.live_mean > temp.reference_mean + 3.0

    _feed(monitor, core, healthy[6000:9000])
    (report,) = monitor.evaluate(4.0)
    assert not report.status.drifting
    assert report.event is not None
    assert not report.event.drifting


def test_rows_are_binned_together_and_all_counted_at_each_measurement(
    reference: FeatureProfile, healthy: npt.NDArray[np.float32]
) -> None:
    # window 2000: buckets of 200, rows binned 50 at a time
    monitor = _monitor(reference, min_window=1)
    core = _core(("fault-clf", "1"))
    _feed(monitor, core, healthy[:8])
    assert monitor.evaluate(0.0) == []  # first sight: the reference is looked up
    (window,) = (t.window for t in monitor._tracked.values())
    _feed(monitor, core, healthy[8:48], batch=10)  # 40 rows: below one binning
    assert window.added == 0
    (report,) = monitor.evaluate(1.0)  # a measurement bins what is pending
    assert report.status.window == window.added == 40
    _feed(monitor, core, healthy[48:108], batch=10)  # 60 rows: 50 binned at once
    assert window.added == 90
    (report,) = monitor.evaluate(2.0)
    assert report.status.window == 100
    assert report.fresh


def test_versions_without_reference_are_skipped_and_idle_ones_retired(
    reference: FeatureProfile, healthy: npt.NDArray[np.float32]
) -> None:
    monitor = _monitor(reference, min_window=100)
    _feed(monitor, _core(("fault-clf", "2")), healthy[:200])  # version 2 has no reference
    assert monitor.evaluate(0.0) == []
    assert monitor.tracked == []
    _feed(monitor, _core(("fault-clf", "2")), healthy[:200])
    assert monitor.evaluate(1.0) == []
    core = _core(("fault-clf", "1"))
    _feed(monitor, core, healthy[:64])
    monitor.evaluate(2.0)
    _feed(monitor, core, healthy[:500])
    assert len(monitor.evaluate(3.0)) == 1
    for k in range(RETIRE_AFTER - 1):
        (report,) = monitor.evaluate(4.0 + k)
        assert not report.fresh
    assert monitor.evaluate(10.0) == []
    assert monitor.tracked == []


def test_observer_publishes_statuses_events_and_gauges(
    reference: FeatureProfile, healthy: npt.NDArray[np.float32]
) -> None:
    registry = CollectorRegistry()
    sink = MemoryDriftSink()
    now = [100.0]
    observer = DriftObserver(
        _monitor(reference), sink, DriftMetrics(registry), interval=1.0, clock=lambda: now[0]
    )
    core = _core(("fault-clf", "1"), ("vib-ae", "7"))
    _feed(observer, core, healthy[:64])
    observer.report()
    _feed(observer, core, healthy[:2000])
    observer.report()
    labels = {"model": "fault-clf", "version": "1"}

    def sample(name: str, **extra: str) -> float | None:
        return registry.get_sample_value(name, {**labels, **extra})

    # 2000 readings counted: ten full buckets of 200, of which the ring keeps nine
    assert sink.statuses["fault-clf"].window == 1800
    assert "vib-ae" not in sink.statuses  # no reference for that version
    assert sample("iotstream_worker_drift_psi_max") == sink.statuses["fault-clf"].psi_max
    assert sample("iotstream_worker_drifting") == 0.0
    assert sample("iotstream_worker_feature_psi", feature="bearing_temp_c") is not None

    drifted = healthy[2000:4000].copy()
    drifted[:, TEMP] += 10.0
    _feed(observer, core, drifted)
    now[0] = 200.0
    observer.report()
    assert sample("iotstream_worker_drifting") == 1.0
    assert sample("iotstream_worker_drift_events_total", direction="start") == 1.0
    (event,) = sink.events
    assert event.drifting
    assert event.ts == 200.0
    assert event.worker_id == "w-1"
    assert sink.statuses["fault-clf"].drifting

    for k in range(RETIRE_AFTER):  # no more readings: the version retires, gauges go
        observer.report()
        assert len(sink.events) == 1, k
    assert sample("iotstream_worker_drift_psi_max") is None


def test_observer_never_raises(reference: FeatureProfile) -> None:
    registry = CollectorRegistry()
    observer = DriftObserver(
        _monitor(reference), MemoryDriftSink(), DriftMetrics(registry), interval=1.0
    )
    narrow = _core(("fault-clf", "1"))
    wrong = InferenceCore({"fault-clf": _Narrow()}, default_model="fault-clf", worker_id="w")
    rows = np.ones((8, 3), dtype=np.float32)
    _feed(observer, narrow, np.ones((8, len(FEATURE_NAMES)), dtype=np.float32))
    observer.report()
    _feed(observer, wrong, rows)  # 3 features against a 16-feature reference
    assert registry.get_sample_value("iotstream_worker_drift_errors_total", {"stage": "observe"})


class _Narrow(_Echo):
    def __init__(self) -> None:
        self._info = ModelInfo("fault-clf", "1", "fp32", "autoencoder", ("a", "b", "c"))
