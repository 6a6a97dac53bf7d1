"""The simulated fleet's fault process (iot_models.sensors.FaultProcess) with the
simulator's defaults: most machines healthy, faults that start at random times, last
their bounded while and end; a fleet started together already looks like a running one."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from device_sim.settings import SimSettings
from iot_models.sensors import LABELS, FaultProcess, Machine


def _fleet(n: int, settings: SimSettings, seed: int = 1) -> list[FaultProcess]:
    return [
        FaultProcess(
            np.random.default_rng([seed, i]),
            settings.mean_time_between_faults,
            (settings.fault_duration_min, settings.fault_duration_max),
            steady_start=True,
        )
        for i in range(n)
    ]


def test_default_fleet_is_mostly_healthy_with_faults_that_end() -> None:
    settings = SimSettings()
    fleet = _fleet(1000, settings)
    assert 0.05 <= fleet[0].fault_share <= 0.10
    shares, runs = [], []
    started = [0.0 if p.fault else None for p in fleet]  # None: healthy now
    for t in range(1, 1201):  # 20 minutes of 1 s steps
        in_fault = 0
        for i, p in enumerate(fleet):
            p.advance(1.0)
            if p.fault:
                in_fault += 1
                if started[i] is None:
                    started[i] = float(t)
            elif (since := started[i]) is not None:
                runs.append((t - since, since == 0.0))
                started[i] = None
        shares.append(in_fault / len(fleet))
    assert min(shares) >= 0.05 and max(shares) <= 0.11, (min(shares), max(shares))
    assert abs(np.mean(shares) - fleet[0].fault_share) < 0.01
    whole = [length for length, from_start in runs if not from_start]
    assert len(whole) > 500  # faults start during the run ...
    assert max(whole) <= settings.fault_duration_max + 1  # ... and end within their bound
    assert min(whole) >= settings.fault_duration_min
    assert 60 <= np.mean(whole) <= 90  # uniform 30-120 s: mean 75
    assert any(from_start for _, from_start in runs)  # faults under way at start end too


def test_steady_start_starts_part_way_through_episodes() -> None:
    fleet = _fleet(2000, SimSettings(), seed=2)
    in_fault = [p for p in fleet if p.fault]
    assert 0.05 <= len(in_fault) / len(fleet) <= 0.11
    assert {LABELS[p.fault] for p in in_fault} == set(LABELS[1:])
    assert len({round(p.severity, 6) for p in in_fault}) > 50  # not all at the start
    cold = FaultProcess(np.random.default_rng(3), 900.0, (30.0, 120.0))
    assert cold.fault == 0  # without steady_start every machine starts healthy


def test_same_rng_same_process_and_labels_follow_it() -> None:
    a, b = (FaultProcess(np.random.default_rng(5), 20.0, (5.0, 10.0)) for _ in range(2))
    states = []
    for _ in range(500):
        a.advance(0.5)
        b.advance(0.5)
        assert (a.fault, a.severity) == (b.fault, b.severity)
        states.append(a.fault)
    changes = sum(1 for p, q in itertools.pairwise(states) if p != q)
    assert changes > 10
    machine = Machine(9, mean_time_between_faults_s=20.0, fault_duration_s=(5.0, 10.0))
    for _ in range(300):
        _, label = machine.step(0.5)
        assert label == LABELS[machine.faults.fault] == machine.label


@pytest.mark.parametrize("durations", [(0.0, 10.0), (20.0, 10.0)])
def test_bad_durations_are_refused(durations: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="duration"):
        FaultProcess(np.random.default_rng(0), 10.0, durations)
    if durations[0] > 0:
        with pytest.raises(ValueError, match="fault_duration_min"):
            SimSettings(fault_duration_min=durations[0], fault_duration_max=durations[1])
