"""Canary routing (a pure function of the device id), the core's canary lanes, and the
swappable core."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from iot_contract import Reading
from iot_models.canary import BUCKETS, CanaryRule, canary_bucket
from iot_models.core import InferenceCore
from iot_models.model import ModelInfo
from iot_models.swap import SwappableCore
from tests.harness.models import LinearModel


def test_buckets_are_pinned_values_independent_of_the_process() -> None:
    # pinned: a change would move devices between versions across a fleet upgrade
    assert canary_bucket("fault-clf", "pump-0001") == 1179
    assert canary_bucket("vib-ae", "pump-0001") == 8172
    code = "from iot_models.canary import canary_bucket as b; print(b('fault-clf', 'pump-0001'))"
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123", "PATH": ""},
    )
    assert int(other.stdout) == canary_bucket("fault-clf", "pump-0001")
    assert 0 <= canary_bucket("m", "") < BUCKETS


def test_the_share_is_close_to_the_percentage_and_grows_monotonically() -> None:
    devices = [f"pump-{i:05d}" for i in range(20_000)]
    chosen = {}
    for percent in (0.0, 1.0, 10.0, 50.0, 100.0):
        rule = CanaryRule("fault-clf", percent)
        chosen[percent] = {d for d in devices if rule.applies(d)}
        assert abs(len(chosen[percent]) / len(devices) * 100 - percent) < 1.0
    assert chosen[0.0] == set()
    assert chosen[100.0] == set(devices)
    assert chosen[1.0] <= chosen[10.0] <= chosen[50.0], "raising the share only adds devices"


def test_each_model_draws_its_own_devices() -> None:
    devices = [f"pump-{i}" for i in range(5000)]
    a = {d for d in devices if CanaryRule("fault-clf", 10).applies(d)}
    b = {d for d in devices if CanaryRule("vib-ae", 10).applies(d)}
    assert a != b


def test_globs_always_take_their_devices() -> None:
    rule = CanaryRule("m", 0.0, ("lab-*", "pump-000[12]"))
    assert [rule.applies(d) for d in ("lab-7", "pump-0001", "pump-0002", "pump-0003")] == [
        True,
        True,
        True,
        False,
    ]


def test_an_out_of_range_percentage_is_refused() -> None:
    with pytest.raises(ValueError, match="outside 0-100"):
        CanaryRule("m", 101)


class _Versioned(LinearModel):
    """The test model under a version of its own."""

    def __init__(self, version: str) -> None:
        super().__init__()
        self.version = version

    @property
    def info(self) -> ModelInfo:
        from dataclasses import replace

        return replace(super().info, version=self.version)


def readings(devices: list[str]) -> list[Reading]:
    return [Reading(device_id=d, seq=1, ts=1.0, features=[1.0, 0.0, 0.5]) for d in devices]


def test_the_core_sends_canary_devices_to_the_canary_version_in_one_call_each() -> None:
    stable, canary = _Versioned("1"), _Versioned("2")
    rule = CanaryRule("lin", 30.0, ("vip-*",))
    core = InferenceCore(
        {"lin": stable}, default_model="lin", worker_id="w", canaries={"lin": (canary, rule)}
    )
    devices = [f"d{i}" for i in range(200)] + ["vip-1"]
    result = core.infer(readings(devices), 1.0)
    assert result.rejected == []
    versions = [r["model"]["version"] for r in result.records]
    assert versions == ["2" if rule.applies(d) else "1" for d in devices]
    assert len(stable.calls) == 1 and len(canary.calls) == 1, "one model call per version"
    n2 = sum(rule.applies(d) for d in devices)
    assert result.by_version == {("lin", "1"): len(devices) - n2, ("lin", "2"): n2}
    assert "canary 2 for 30% + vip-*" in core.describe()


def test_a_canary_lane_cannot_be_named_by_a_reading() -> None:
    core = InferenceCore(
        {"lin": _Versioned("1")},
        default_model="lin",
        worker_id="w",
        canaries={"lin": (_Versioned("2"), CanaryRule("lin", 100))},
    )
    reading = Reading(device_id="d", seq=1, ts=1.0, features=[1.0, 0.0, 0.5], model="lin")
    assert core.infer([reading], 1.0).records[0]["model"]["version"] == "2"
    with pytest.raises(ValueError, match="not loaded"):
        InferenceCore(
            {"lin": _Versioned("1")},
            default_model="lin",
            worker_id="w",
            canaries={"other": (_Versioned("2"), CanaryRule("other", 1))},
        )


def test_the_swappable_core_scores_each_batch_on_one_core() -> None:
    old = InferenceCore({"lin": _Versioned("1")}, default_model="lin", worker_id="w")
    new = InferenceCore({"lin": _Versioned("2")}, default_model="lin", worker_id="w")
    seen: list[dict[tuple[str, str], int]] = []
    swapped: list[tuple[str, str]] = []
    holder = SwappableCore(
        old,
        on_scored=lambda r: seen.append(r.by_version),
        on_swap=lambda a, b: swapped.append(
            (a.models["lin"].info.version, b.models["lin"].info.version)
        ),
    )
    assert holder.infer(readings(["a", "b"]), 1.0).by_version == {("lin", "1"): 2}
    thread = threading.Thread(target=holder.swap, args=(new,))
    thread.start()
    thread.join()
    assert holder.current is new
    assert holder.infer(readings(["a"]), 1.0).by_version == {("lin", "2"): 1}
    assert seen == [{("lin", "1"): 2}, {("lin", "2"): 1}]
    assert swapped == [("1", "2")]
    assert holder.swaps == 1
