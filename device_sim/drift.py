"""Input drift the simulator can inject (``iotstream sim --drift SPEC``), so the drift loop
(worker PSI, event, retraining) can be shown end to end.

Two kinds, each on a share of the devices drawn with the simulator's seed:

* ``offset:<feature>=<amount>[,ramp=<s>][,start=<s>][,devices=<share>]``: a sensor offset
  (an ageing sensor, a recalibration): ``amount`` in the feature's unit is added to the
  reading, growing linearly from 0 at ``start`` seconds to ``amount`` at ``start + ramp``
  (``ramp`` 0: at once).
* ``new-machine-type[,start=<s>][,devices=<share>]``: from ``start`` the devices read like a
  pump class the training data never saw (:data:`NEW_MACHINE_SCALE`: a 6-pole 1000 rpm
  motor driving a bigger pump), sudden, as when machines are replaced.

Specs are joined with ``;``. The drift changes what the sensors report, not the machine's
state: the ground-truth ``label`` stays the machine's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from iot_models.sensors import FEATURE_NAMES, N_FEATURES

__all__ = [
    "NEW_MACHINE_SCALE",
    "NEW_MACHINE_SYNC_RPM",
    "DeviceDrift",
    "DriftPlan",
    "NewMachineType",
    "SensorOffset",
    "parse_drift",
]


def _scale() -> npt.NDArray[np.float32]:
    factors = {
        "vib_rms_x_mm_s": 1.6,
        "vib_rms_y_mm_s": 1.6,
        "vib_rms_z_mm_s": 1.6,
        "vib_peak_g": 1.5,
        "current_a_amp": 2.5,
        "current_b_amp": 2.5,
        "current_c_amp": 2.5,
        "discharge_pressure_bar": 1.3,
        "flow_m3_h": 2.5,
    }
    scale = np.ones(N_FEATURES, dtype=np.float32)
    for name, factor in factors.items():
        scale[FEATURE_NAMES.index(name)] = factor
    return scale


NEW_MACHINE_SCALE = _scale()
"""Per feature, what ``new-machine-type`` multiplies a reading by (the shaft speed aside:
see :data:`NEW_MACHINE_SYNC_RPM`)."""
NEW_MACHINE_SYNC_RPM = 1000.0
"""``new-machine-type`` motors are 6-pole (1000 rpm synchronous); the training fleet has
only 1500 and 3000 rpm ones. The speed reading is rescaled to it, slip and noise kept."""
_SPEED = FEATURE_NAMES.index("shaft_speed_rpm")


@dataclass(frozen=True, slots=True)
class SensorOffset:
    """``offset:``: add ``amount`` to feature ``feature`` (index), ramped."""

    feature: int
    amount: float
    ramp_s: float = 0.0
    start_s: float = 0.0
    share: float | None = None

    def factor(self, elapsed: float) -> float:
        """How much of ``amount`` applies ``elapsed`` seconds into the run (0 to 1)."""
        if elapsed < self.start_s:
            return 0.0
        if self.ramp_s <= 0:
            return 1.0
        return min(1.0, (elapsed - self.start_s) / self.ramp_s)


@dataclass(frozen=True, slots=True)
class NewMachineType:
    """``new-machine-type``: scale readings by :data:`NEW_MACHINE_SCALE` from ``start_s``."""

    start_s: float = 0.0
    share: float | None = None


Drift = SensorOffset | NewMachineType


def _number(kind: str, key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"drift {kind}: {key}={text!r} is not a number") from None
    if not np.isfinite(value) or (value < 0 and key != "amount"):
        raise ValueError(f"drift {kind}: {key}={text!r} is out of range")
    return value


def _options(kind: str, parts: list[str], allowed: set[str]) -> dict[str, float]:
    found: dict[str, float] = {}
    for part in parts:
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or key not in allowed:
            raise ValueError(
                f"drift {kind}: unknown option {part!r} (allowed: {', '.join(sorted(allowed))})"
            )
        found[key] = _number(kind, key, value.strip())
    if "devices" in found and not 0 < found["devices"] <= 1:
        raise ValueError(f"drift {kind}: devices={found['devices']:g} must be in (0, 1]")
    return found


def _parse_one(spec: str) -> Drift:
    head, _, rest = spec.strip().partition(":")
    head = head.strip()
    if head == "offset":
        first, *parts = rest.split(",")
        feature, eq, amount = first.partition("=")
        feature = feature.strip()
        if not eq or feature not in FEATURE_NAMES:
            raise ValueError(
                f"drift offset: {first.strip()!r} must be <feature>=<amount> with a feature "
                f"of: {', '.join(FEATURE_NAMES)}"
            )
        options = _options("offset", parts, {"ramp", "start", "devices"})
        return SensorOffset(
            FEATURE_NAMES.index(feature),
            _number("offset", "amount", amount.strip()),
            ramp_s=options.get("ramp", 0.0),
            start_s=options.get("start", 0.0),
            share=options.get("devices"),
        )
    if head.startswith("new-machine-type"):
        # the options may follow a colon or a comma: new-machine-type:devices=0.2
        tail = head.removeprefix("new-machine-type")
        parts = [p for p in (tail.lstrip(",") + "," + rest).split(",") if p.strip()]
        if tail and not tail.startswith(","):
            raise ValueError(f"drift: unknown kind {head!r}")
        options = _options("new-machine-type", parts, {"start", "devices"})
        return NewMachineType(start_s=options.get("start", 0.0), share=options.get("devices"))
    raise ValueError(
        f"drift: unknown kind {head!r} in {spec!r}; use offset:<feature>=<amount>[,ramp=<s>]"
        "[,start=<s>][,devices=<share>] or new-machine-type[,start=<s>][,devices=<share>]"
    )


def parse_drift(text: str) -> list[Drift]:
    """The drifts of a ``;``-separated spec.

    Raises:
        ValueError: a spec is malformed (the message says which and what is allowed).
    """
    specs = [s for s in text.split(";") if s.strip()]
    if not specs:
        raise ValueError("drift: empty spec")
    return [_parse_one(s) for s in specs]


@dataclass(frozen=True, slots=True)
class DeviceDrift:
    """The drifts that apply to one device."""

    offsets: tuple[SensorOffset, ...]
    new_machine: NewMachineType | None

    def apply(self, features: npt.NDArray[np.float32], elapsed: float) -> None:
        """Change one reading in place, ``elapsed`` seconds into the run."""
        if self.new_machine is not None and elapsed >= self.new_machine.start_s:
            features *= NEW_MACHINE_SCALE
            sync = 1500.0 if features[_SPEED] < 2250.0 else 3000.0
            features[_SPEED] *= NEW_MACHINE_SYNC_RPM / sync
        for offset in self.offsets:
            features[offset.feature] += offset.amount * offset.factor(elapsed)


class DriftPlan:
    """Which devices each drift applies to: for a drift with share ``s``, the first
    ``max(1, round(s * n))`` devices of a permutation drawn from ``seed`` (a different
    permutation per drift, the same across runs).

    Args:
        drifts: from :func:`parse_drift`.
        devices: fleet size (devices are numbered 0 to ``devices - 1``).
        default_share: the share of a drift that does not say ``devices=``.
        seed: the simulator's seed.
    """

    def __init__(self, drifts: list[Drift], devices: int, default_share: float, seed: int) -> None:
        offsets: list[list[SensorOffset]] = [[] for _ in range(devices)]
        new_machine: list[NewMachineType | None] = [None] * devices
        for k, drift in enumerate(drifts):
            share = drift.share if drift.share is not None else default_share
            chosen = np.random.default_rng([seed, k]).permutation(devices)
            for index in chosen[: max(1, round(share * devices))].tolist():
                if isinstance(drift, SensorOffset):
                    offsets[index].append(drift)
                else:
                    new_machine[index] = drift
        self._by_device = {
            i: DeviceDrift(tuple(offsets[i]), new_machine[i])
            for i in range(devices)
            if offsets[i] or new_machine[i] is not None
        }

    def for_device(self, index: int) -> DeviceDrift | None:
        """What drifts on device ``index`` (``None``: nothing)."""
        return self._by_device.get(index)

    @property
    def devices(self) -> list[int]:
        """The devices with any drift."""
        return sorted(self._by_device)
