"""The shared synthetic sensor generator."""

from __future__ import annotations

import itertools

import numpy as np

from iot_models.sensors import FEATURE_NAMES, LABELS, N_FEATURES, Machine, make_dataset


def test_dataset_shapes_and_determinism() -> None:
    x, y = make_dataset(2000, seed=5)
    assert x.shape == (2000, N_FEATURES) == (2000, len(FEATURE_NAMES))
    assert x.dtype == np.float32
    assert y.dtype == np.int64
    assert np.isfinite(x).all()
    x2, y2 = make_dataset(2000, seed=5)
    assert np.array_equal(x, x2)
    assert np.array_equal(y, y2)
    x3, _ = make_dataset(2000, seed=6)
    assert not np.array_equal(x, x3)


def test_dataset_label_mix() -> None:
    _, y = make_dataset(20_000, seed=1, fault_share=0.5)
    counts = np.bincount(y, minlength=len(LABELS)) / len(y)
    assert abs(counts[0] - 0.5) < 0.02
    assert np.all(np.abs(counts[1:] - 0.1) < 0.015)


def test_fault_signatures_point_the_right_way() -> None:
    x, y = make_dataset(30_000, seed=2)
    f = {name: i for i, name in enumerate(FEATURE_NAMES)}

    def mean(label: str, feature: str) -> float:
        return float(x[y == LABELS.index(label), f[feature]].mean())

    assert mean("overheating", "motor_temp_c") > mean("normal", "motor_temp_c") + 5
    assert mean("bearing_wear", "vib_kurtosis_x") > mean("normal", "vib_kurtosis_x") + 0.5
    assert mean("imbalance", "vib_rms_x_mm_s") > 1.5 * mean("normal", "vib_rms_x_mm_s")
    assert mean("misalignment", "vib_rms_z_mm_s") > 1.5 * mean("normal", "vib_rms_z_mm_s")
    assert mean("cavitation", "discharge_pressure_bar") < mean("normal", "discharge_pressure_bar")


def test_machine_is_deterministic_and_returns_fresh_arrays() -> None:
    a, b = Machine(7), Machine(7)
    first = [a.step(0.1) for _ in range(600)]
    second = [b.step(0.1) for _ in range(600)]
    for (xa, la), (xb, lb) in zip(first, second, strict=True):
        assert la == lb
        assert np.array_equal(xa, xb)
    assert first[0][0] is not first[1][0]
    assert first[0][0].shape == (N_FEATURES,)
    assert first[0][0].dtype == np.float32


def test_machine_has_fault_episodes_that_end() -> None:
    m = Machine(3, mean_time_between_faults_s=30.0, fault_duration_s=(10.0, 20.0))
    labels = [m.step(1.0)[1] for _ in range(2000)]
    assert set(labels) <= set(LABELS)
    assert labels.count("normal") > 500
    assert len(set(labels) - {"normal"}) >= 3
    changes = sum(1 for p, q in itertools.pairwise(labels) if p != q)
    assert changes > 20  # episodes start and end (repair)


def test_machine_values_stay_plausible() -> None:
    m = Machine(11)
    rows = np.array([m.step(0.5)[0] for _ in range(5000)])
    assert np.isfinite(rows).all()
    assert (rows[:, :3] > 0).all()  # vibration RMS
    assert (rows[:, 15] > 1000).all()  # shaft speed (rpm)
