"""Synthetic rotating-machinery sensors (pump + motor), shared by the simulator and training.

One :class:`Machine` per simulated device: a per-device baseline, slow normal drift (load
follows an Ornstein-Uhlenbeck process, ambient temperature a daily cycle) and labelled fault
episodes whose severity ramps up while they last. :func:`make_dataset` draws independent
rows from the same model, vectorised, for training. numpy only: the simulator imports this
module at run time.

Every row has the 16 features of :data:`FEATURE_NAMES`, in that order; faults are the
:data:`LABELS`. Signatures (at full severity; they start at ~10 % of it, so early episodes
overlap with normal operation, as on real machines):

* ``bearing_wear``: kurtosis up on all axes, higher peak and crest factor, warmer bearing.
* ``imbalance``: radial (x, y) vibration RMS more than doubles, axial (z) barely moves.
* ``misalignment``: axial (z) RMS up, warmer bearing, phase currents drift apart.
* ``overheating``: motor temperature +32 °C, higher phase currents, slight speed loss.
* ``cavitation``: lower discharge pressure and flow, broadband vibration, higher kurtosis.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["FEATURE_NAMES", "LABELS", "N_FEATURES", "FaultProcess", "Machine", "make_dataset"]

FEATURE_NAMES: tuple[str, ...] = (
    "vib_rms_x_mm_s",
    "vib_rms_y_mm_s",
    "vib_rms_z_mm_s",
    "vib_kurtosis_x",
    "vib_kurtosis_y",
    "vib_kurtosis_z",
    "vib_peak_g",
    "crest_factor",
    "bearing_temp_c",
    "motor_temp_c",
    "current_a_amp",
    "current_b_amp",
    "current_c_amp",
    "discharge_pressure_bar",
    "flow_m3_h",
    "shaft_speed_rpm",
)
"""Ordered input features of every model trained on this generator."""

LABELS: tuple[str, ...] = (
    "normal",
    "bearing_wear",
    "imbalance",
    "misalignment",
    "overheating",
    "cavitation",
)
"""Machine states; index 0 is normal operation."""

N_FEATURES = len(FEATURE_NAMES)
_F = {name: i for i, name in enumerate(FEATURE_NAMES)}
_N_LABELS = len(LABELS)

# Relative measurement noise (standard deviation as a share of the value) per feature.
_REL_NOISE = np.array(
    [
        *(0.08, 0.08, 0.08, 0.05, 0.05, 0.05, 0.10, 0.06),  # vibration
        *(0.015, 0.015, 0.02, 0.02, 0.02, 0.03, 0.03, 0.002),  # process
    ],
    dtype=np.float32,
)
_LOAD_MEAN, _LOAD_SD, _LOAD_TAU_S = 0.72, 0.12, 600.0
_SEVERITY_START = 0.3
_BLOCK = 256  # random numbers are drawn in blocks: no per-step generator call


def _device_params(
    rng: np.random.Generator, n: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Per-device ``base``, ``load_coef`` (both ``(n, 16)``) and fault ``sig`` ``(n, 6, 16)``.

    The noiseless value of a row is ``base + load * load_coef + ambient_delta * [temps] +
    severity * sig[fault]``.
    """
    f = _F
    base = np.zeros((n, N_FEATURES), dtype=np.float64)
    load_coef = np.zeros_like(base)
    rms0 = (
        1.8
        * rng.lognormal(0.0, 0.2, (n, 1))
        * np.array([1.0, 0.9, 0.6])
        * rng.lognormal(0.0, 0.08, (n, 3))
    )
    base[:, 0:3] = rms0
    base[:, 3:6] = 3.0 + rng.normal(0.0, 0.12, (n, 3))
    peak0 = 0.45 * rms0.mean(axis=1) * rng.lognormal(0.0, 0.1, n)
    base[:, f["vib_peak_g"]] = peak0
    base[:, f["crest_factor"]] = 3.0 + rng.normal(0.0, 0.15, n)
    base[:, f["bearing_temp_c"]] = 42.0 + rng.normal(0.0, 3.0, n)
    load_coef[:, f["bearing_temp_c"]] = 14.0
    base[:, f["motor_temp_c"]] = 50.0 + rng.normal(0.0, 4.0, n)
    load_coef[:, f["motor_temp_c"]] = 24.0
    rated = rng.choice(np.array([18.0, 32.0, 55.0]), n) * rng.lognormal(0.0, 0.05, n)
    phase = 1.0 + rng.normal(0.0, 0.01, (n, 3))
    base[:, 10:13] = (0.3 * rated)[:, None] * phase
    load_coef[:, 10:13] = (0.7 * rated)[:, None] * phase
    p_rated = rng.uniform(3.0, 7.0, n)
    base[:, f["discharge_pressure_bar"]] = 0.75 * p_rated
    load_coef[:, f["discharge_pressure_bar"]] = 0.35 * p_rated
    q_rated = rated * rng.uniform(2.5, 3.5, n)
    load_coef[:, f["flow_m3_h"]] = q_rated
    sync = rng.choice(np.array([1500.0, 3000.0]), n)
    base[:, f["shaft_speed_rpm"]] = sync * 0.995
    load_coef[:, f["shaft_speed_rpm"]] = -sync * 0.025

    # Fault deltas at severity 1, with a per-device jitter so signatures are not identical.
    sig = np.zeros((n, _N_LABELS, N_FEATURES), dtype=np.float64)
    bw, im, mis, oh, cav = 1, 2, 3, 4, 5
    sig[:, bw, 0:3] = 0.15 * rms0
    sig[:, bw, 3:6] = np.array([2.4, 2.4, 1.2])
    sig[:, bw, f["vib_peak_g"]] = 0.6 * peak0
    sig[:, bw, f["crest_factor"]] = 1.5
    sig[:, bw, f["bearing_temp_c"]] = 8.0
    sig[:, im, 0:3] = rms0 * np.array([1.4, 1.2, 0.1])
    sig[:, im, f["vib_peak_g"]] = 0.4 * peak0
    sig[:, im, f["crest_factor"]] = -0.25
    sig[:, im, f["bearing_temp_c"]] = 2.0
    sig[:, mis, 0:3] = rms0 * np.array([0.3, 0.5, 1.5])
    sig[:, mis, f["vib_kurtosis_z"]] = 0.4
    sig[:, mis, f["bearing_temp_c"]] = 5.0
    sig[:, mis, f["motor_temp_c"]] = 3.0
    sig[:, mis, 10] = 0.04 * rated
    sig[:, mis, 12] = -0.04 * rated
    sig[:, oh, f["motor_temp_c"]] = 32.0
    sig[:, oh, f["bearing_temp_c"]] = 6.0
    sig[:, oh, 10:13] = (0.16 * rated)[:, None]
    sig[:, oh, f["shaft_speed_rpm"]] = -0.005 * sync
    sig[:, cav, 0:3] = 0.35 * rms0
    sig[:, cav, 3:6] = 0.8
    sig[:, cav, f["vib_peak_g"]] = 0.3 * peak0
    sig[:, cav, f["crest_factor"]] = 0.6
    sig[:, cav, f["discharge_pressure_bar"]] = -0.30 * p_rated
    sig[:, cav, f["flow_m3_h"]] = -0.2 * q_rated
    sig *= rng.lognormal(0.0, 0.15, (n, _N_LABELS, 1))
    f32 = np.float32
    return base.astype(f32), load_coef.astype(f32), sig.astype(f32)


def _temps_mask() -> npt.NDArray[np.float32]:
    mask = np.zeros(N_FEATURES, dtype=np.float32)
    mask[_F["bearing_temp_c"]] = mask[_F["motor_temp_c"]] = 1.0
    return mask


_TEMPS = _temps_mask()


def _ambient_delta(t: float, phase: float) -> float:
    """Ambient temperature minus 20 °C: a daily cycle of ±6 °C."""
    return 6.0 * math.sin(2.0 * math.pi * t / 86_400.0 + phase)


class FaultProcess:
    """When one machine is in a fault episode, and how bad it is: an alternating renewal
    process on a clock the caller advances.

    Healthy running lasts an exponential time (mean ``mean_time_between_faults_s``); then a
    fault of a uniformly drawn kind lasts a uniform time in ``fault_duration_s``, its
    severity ramping from 0.3 to a peak in [0.6, 1.0]; then the machine is repaired and
    runs healthy again. In the long run a machine is in fault for the share
    ``mean duration / (mean_time_between_faults_s + mean duration)`` of the time
    (:attr:`fault_share`), and so, at any moment, is that share of a fleet.

    Args:
        rng: the machine's generator (draws happen only when an episode starts or ends,
            and at start when ``steady_start``).
        mean_time_between_faults_s: mean healthy running time.
        fault_duration_s: (min, max) length of an episode.
        start_time_s: the clock at start.
        steady_start: draw the state at start from the long-run distribution (in fault
            with probability :attr:`fault_share`, part-way through an episode; else
            healthy), so a fleet started together already looks like one that has been
            running, with faults ending at scattered times. Otherwise every machine starts
            healthy.
    """

    def __init__(
        self,
        rng: np.random.Generator,
        mean_time_between_faults_s: float,
        fault_duration_s: tuple[float, float],
        *,
        start_time_s: float = 0.0,
        steady_start: bool = False,
    ) -> None:
        lo, hi = fault_duration_s
        if not 0 < lo <= hi or mean_time_between_faults_s <= 0:
            raise ValueError("need 0 < min duration <= max duration and a positive mean time")
        self._rng = rng
        self._mtbf = mean_time_between_faults_s
        self._duration = fault_duration_s
        self.t = start_time_s
        """The clock (seconds)."""
        self.fault = 0
        """Index into :data:`LABELS` of the current state (0: healthy)."""
        self.severity = 0.0
        """How far the current fault has developed (0 when healthy)."""
        self._ramp = 0.0  # severity gained per second in the current episode
        if steady_start and rng.uniform() < self.fault_share:
            duration = self._start_episode()
            self._advance_episode(duration * float(rng.uniform()))  # part-way through it
        else:
            self._until = self.t + float(rng.exponential(self._mtbf))

    @property
    def fault_share(self) -> float:
        """Long-run share of time in fault."""
        mean = sum(self._duration) / 2
        return mean / (self._mtbf + mean)

    def _start_episode(self) -> float:
        """Start a fault now; returns its duration."""
        self.fault = int(self._rng.integers(1, len(LABELS)))
        duration = float(self._rng.uniform(*self._duration))
        peak = float(self._rng.uniform(0.6, 1.0))
        self.severity = _SEVERITY_START
        self._ramp = (peak - _SEVERITY_START) / duration
        self._until = self.t + duration
        return duration

    def _advance_episode(self, dt: float) -> None:
        self.severity += self._ramp * dt
        self._until -= dt

    def advance(self, dt: float) -> None:
        """Move the clock on by ``dt`` seconds (at most one state change per call)."""
        self.t += dt
        if self.t >= self._until:
            if self.fault == 0:
                self._start_episode()
            else:  # repaired
                self.fault, self.severity, self._ramp = 0, 0.0, 0.0
                self._until = self.t + float(self._rng.exponential(self._mtbf))
        elif self.fault:
            self.severity += self._ramp * dt


class Machine:
    """One simulated pump with its own baseline, drift and fault episodes.

    Not thread-safe; one instance per device. ``step`` costs a few microseconds.

    Args:
        seed: seeds this machine's generator (same seed, same sequence).
        mean_time_between_faults_s: mean normal running time before a fault episode starts.
        fault_duration_s: (min, max) length of an episode; severity ramps up across it.
        start_time_s: simulated clock at start (sets the ambient phase of the day).
        steady_start: start in the long-run state of the fault process (see
            :class:`FaultProcess`) instead of healthy.
    """

    def __init__(
        self,
        seed: int,
        *,
        mean_time_between_faults_s: float = 600.0,
        fault_duration_s: tuple[float, float] = (60.0, 300.0),
        start_time_s: float = 0.0,
        steady_start: bool = False,
    ) -> None:
        self._rng = np.random.default_rng(seed)
        base, load_coef, sig = _device_params(self._rng, 1)
        self._base, self._load_coef, self._sig = base[0], load_coef[0], sig[0]
        self._phase = float(self._rng.uniform(0.0, 2.0 * math.pi))
        self._load = float(np.clip(self._rng.normal(_LOAD_MEAN, _LOAD_SD), 0.2, 1.0))
        self.faults = FaultProcess(
            self._rng,
            mean_time_between_faults_s,
            fault_duration_s,
            start_time_s=start_time_s,
            steady_start=steady_start,
        )
        """The machine's fault episodes (its clock is the machine's)."""
        self._buf = np.empty(N_FEATURES, dtype=np.float32)
        self._i = _BLOCK
        self._noise = np.empty((_BLOCK, N_FEATURES), dtype=np.float32)
        self._innov = np.empty(_BLOCK)

    @property
    def label(self) -> str:
        """The machine's current state."""
        return LABELS[self.faults.fault]

    def _refill(self) -> None:
        z = self._rng.standard_normal((_BLOCK, N_FEATURES), dtype=np.float32)
        np.multiply(z, _REL_NOISE, out=self._noise)
        self._noise += 1.0
        self._innov = self._rng.standard_normal(_BLOCK)
        self._i = 0

    def _advance_state(self, dt: float) -> None:
        self.faults.advance(dt)
        a = min(dt / _LOAD_TAU_S, 1.0)
        z = float(self._innov[self._i])
        self._load += a * (_LOAD_MEAN - self._load) + _LOAD_SD * math.sqrt(2.0 * a) * z
        self._load = min(max(self._load, 0.2), 1.0)

    def step(self, dt: float) -> tuple[npt.NDArray[np.float32], str]:
        """Advance the clock by ``dt`` seconds and read the sensors.

        Returns:
            A new float32 array of the 16 features (:data:`FEATURE_NAMES` order) and the
            ground-truth label of the machine's state.
        """
        if self._i >= _BLOCK:
            self._refill()
        self._advance_state(dt)
        buf = self._buf
        np.multiply(self._load_coef, self._load, out=buf)
        buf += self._base
        faults = self.faults
        ambient = _ambient_delta(faults.t, self._phase)
        if ambient:
            buf += _TEMPS * ambient
        if faults.fault:
            buf += self._sig[faults.fault] * faults.severity
        out = buf * self._noise[self._i]
        self._i += 1
        return out, LABELS[faults.fault]


def make_dataset(
    n: int,
    seed: int,
    *,
    n_devices: int = 256,
    fault_share: float = 0.5,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Draw ``n`` independent labelled rows from a fleet of ``n_devices`` machines.

    Rows follow the same model as :meth:`Machine.step` (load from the stationary drift
    distribution, any time of day, fault severities along an episode's ramp).

    Args:
        n: number of rows.
        seed: generator seed; same arguments, same arrays.
        n_devices: size of the fleet the rows are drawn from.
        fault_share: share of rows in a fault state, spread evenly over the fault labels.

    Returns:
        ``X`` float32 ``(n, 16)`` and ``y`` int64 ``(n,)`` indices into :data:`LABELS`.
    """
    rng = np.random.default_rng(seed)
    base, load_coef, sig = _device_params(rng, n_devices)
    dev = rng.integers(0, n_devices, n)
    p = np.full(_N_LABELS, fault_share / (_N_LABELS - 1))
    p[0] = 1.0 - fault_share
    y = rng.choice(_N_LABELS, size=n, p=p).astype(np.int64)
    load = np.clip(rng.normal(_LOAD_MEAN, _LOAD_SD, n), 0.2, 1.0)
    ambient = 6.0 * np.sin(rng.uniform(0.0, 2.0 * math.pi, n))
    peak = rng.uniform(0.6, 1.0, n)
    severity = np.where(
        y > 0, _SEVERITY_START + rng.uniform(0.0, 1.0, n) * (peak - _SEVERITY_START), 0.0
    )
    x = base[dev] + load[:, None] * load_coef[dev] + ambient[:, None] * _TEMPS
    x += severity[:, None] * sig[dev, y]
    noise = 1.0 + rng.standard_normal((n, N_FEATURES)) * _REL_NOISE
    return (x * noise).astype(np.float32), y
