"""Simulator drift injection (device_sim.drift): spec parsing, which devices drift, and
what a drifted reading looks like over time."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from device_sim.drift import (
    NEW_MACHINE_SCALE,
    DriftPlan,
    NewMachineType,
    SensorOffset,
    parse_drift,
)
from device_sim.settings import SimSettings
from iot_models.sensors import FEATURE_NAMES, Machine

TEMP = FEATURE_NAMES.index("bearing_temp_c")
SPEED = FEATURE_NAMES.index("shaft_speed_rpm")


def test_specs_parse() -> None:
    assert parse_drift("offset:bearing_temp_c=12.5,ramp=60") == [
        SensorOffset(TEMP, 12.5, ramp_s=60.0)
    ]
    assert parse_drift(
        " offset:motor_temp_c=-3,start=10,devices=0.5 ; new-machine-type:devices=0.2"
    ) == [
        SensorOffset(FEATURE_NAMES.index("motor_temp_c"), -3.0, start_s=10.0, share=0.5),
        NewMachineType(share=0.2),
    ]
    assert parse_drift("new-machine-type") == [NewMachineType()]
    assert parse_drift("new-machine-type,start=30") == [NewMachineType(start_s=30.0)]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("offset:bearing_temp=3", "must be <feature>=<amount>"),
        ("offset:bearing_temp_c", "must be <feature>=<amount>"),
        ("offset:bearing_temp_c=x", "is not a number"),
        ("offset:bearing_temp_c=3,ramp=-1", "out of range"),
        ("offset:bearing_temp_c=3,speed=2", "unknown option"),
        ("offset:bearing_temp_c=3,devices=1.5", r"must be in \(0, 1\]"),
        ("new-machine-typo", "unknown kind"),
        ("seasons", "unknown kind"),
        (" ; ", "empty"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_drift(spec)
    with pytest.raises(ValidationError, match=message):
        SimSettings(drift=spec)


def test_plan_picks_a_seeded_share_of_devices() -> None:
    drifts = parse_drift("offset:bearing_temp_c=5;new-machine-type,devices=0.1")
    plan = DriftPlan(drifts, devices=200, default_share=0.3, seed=7)
    offset = [i for i in plan.devices if (d := plan.for_device(i)) and d.offsets]
    replaced = [i for i in plan.devices if (d := plan.for_device(i)) and d.new_machine]
    assert (len(offset), len(replaced)) == (60, 20)
    assert offset != list(range(60))  # drawn, not the first devices
    assert DriftPlan(drifts, 200, 0.3, seed=7).devices == plan.devices
    assert DriftPlan(drifts, 200, 0.3, seed=8).devices != plan.devices
    assert plan.for_device(next(i for i in range(200) if i not in plan.devices)) is None
    assert len(DriftPlan(drifts, devices=3, default_share=0.01, seed=1).devices) >= 1


def test_offset_ramps_and_new_machine_type_scales() -> None:
    drift = DriftPlan(parse_drift("offset:bearing_temp_c=10,ramp=100,start=20"), 1, 1.0, 1)
    device = drift.for_device(0)
    assert device is not None
    base = np.full(len(FEATURE_NAMES), 50.0, dtype=np.float32)
    seen = []
    for elapsed in (0.0, 19.9, 20.0, 70.0, 120.0, 500.0):
        x = base.copy()
        device.apply(x, elapsed)
        seen.append(float(x[TEMP]) - 50.0)
        assert np.array_equal(np.delete(x, TEMP), np.delete(base, TEMP))
    assert seen == pytest.approx([0.0, 0.0, 0.0, 5.0, 10.0, 10.0])

    replaced = DriftPlan(parse_drift("new-machine-type,start=5"), 1, 1.0, 1).for_device(0)
    assert replaced is not None
    x, _ = Machine(3).step(1.0)
    before = x.copy()
    replaced.apply(x, 4.0)
    assert np.array_equal(x, before)
    replaced.apply(x, 5.0)
    assert np.allclose(np.delete(x, SPEED), np.delete(before * NEW_MACHINE_SCALE, SPEED))
    assert 900 < x[SPEED] < 1000 < 1400 < before[SPEED]  # none in the training data this slow
