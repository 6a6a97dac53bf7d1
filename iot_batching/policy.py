"""Cut policies: given an open batch, the input queue, the clock and the recent arrival
rate, close the batch now or say how long and for how many more items to wait. Pure."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

__all__ = ["AdaptivePolicy", "BatchState", "CutPolicy", "FixedPolicy", "Wait", "make_policy"]

_SQRT_2: Final = math.sqrt(2.0)
_SQRT_2PI: Final = math.sqrt(2.0 * math.pi)


@dataclass(frozen=True, slots=True)
class BatchState:
    """What a policy decides on."""

    size: int
    """Items in the open batch (at least 1)."""
    opened_at: float
    """When its first item was added (the caller's clock)."""
    queued: int
    """Items already waiting in the input and not yet added (0: the input is drained)."""
    rate: float
    """Recent arrivals per second (:class:`~iot_batching.ArrivalRate`)."""
    clump: float = 1.0
    """Recent items per arrival (:attr:`ArrivalRate.clump <iot_batching.ArrivalRate>`)."""
    arrived: float | None = None
    """When its first item arrived, estimated, if the caller knows better than
    ``opened_at`` (an item read from a socket waited there first); ``None``: about a clump's
    worth of arrivals before ``opened_at``."""


@dataclass(frozen=True, slots=True)
class Wait:
    """Keep the batch open: look again at ``until`` at the latest, or as soon as ``items``
    more items have arrived (the batch is then full, or the policy wants to see them)."""

    until: float
    items: int


class CutPolicy(Protocol):
    """When to close a batch. Implementations are pure and hold no state."""

    @property
    def max_size(self) -> int:
        """A batch never holds more than this many items."""
        ...

    @property
    def max_wait(self) -> float:
        """Seconds after its first item at which a batch closes whatever else holds."""
        ...

    def decide(self, state: BatchState, now: float) -> Wait | None:
        """``None``: close the batch now; else what to wait for."""
        ...


def _check(max_size: int, max_wait: float) -> None:
    if max_size < 1:
        raise ValueError(f"max_size must be >= 1, got {max_size}")
    if max_wait < 0:
        raise ValueError(f"max_wait must be >= 0, got {max_wait}")


@dataclass(frozen=True, slots=True)
class FixedPolicy:
    """Close at ``max_size`` items or ``max_wait`` seconds after the first, whichever comes
    first, whatever the traffic: a reading arriving alone waits the whole ``max_wait``."""

    max_size: int
    max_wait: float

    def __post_init__(self) -> None:
        _check(self.max_size, self.max_wait)

    def decide(self, state: BatchState, now: float) -> Wait | None:
        """Close when full or due."""
        deadline = state.opened_at + self.max_wait
        if state.size >= self.max_size or now >= deadline:
            return None
        return Wait(deadline, self.max_size - state.size)


@dataclass(frozen=True, slots=True)
class AdaptivePolicy:
    """Wait only as long as waiting is expected to pay; grow to ``max_size`` under load.

    In order:

    1. full (``max_size``), or ``max_wait`` after the first item: close.
    2. items are already queued: wait for them (under load the batch grows from the
       backlog, not from waiting).
    3. the batch is expected to fill, at the recent rate, within twice ``target_wait``
       (and ``max_wait``): wait for it. At high rates batches are then as large as the
       fixed policy's, and so is the CPU per item; a full batch costs its items at most
       one more ``target_wait``.
    4. fewer than one more item is expected before ``target_wait`` after the first: close
       now (idle, trickle, the first items of a burst).
    5. otherwise close at ``target_wait`` after the first item.

    So at low and moderate rates no item waits more than ``target_wait`` (none at all when
    nothing else is coming), and ``max_wait`` remains the bound the fixed policy gives.

    With ``batch_cost`` set, steps 4 and 5 wait first for a floor: the smallest batch whose
    own cost keeps the CPU per item within ``cpu_budget`` of what the fixed policy spends at
    the recent rate (:meth:`floor`). A batch below it closes at the time the floor is
    expected at that rate (``arrived + floor / rate`` when the caller knows when its first
    item arrived, :attr:`BatchState.arrived`; else ``opened_at + (floor + 1 - clump) /
    rate``: it opened with about a clump, one more for arrivals being whole items), or
    earlier once it holds the floor, or at ``max_wait``. The time, not the count, is what
    usually closes it: every batch then waits about as long, and no reading waits for a
    count that comes late. An item arriving alone (no rate, or not one more expected by
    then) still leaves at once.

    Example:
        >>> p = AdaptivePolicy(max_size=64, max_wait=0.005, target_wait=0.002)
        >>> p.decide(BatchState(size=1, opened_at=0.0, queued=0, rate=100.0), now=0.0) is None
        True
        >>> p.decide(BatchState(size=10, opened_at=0.0, queued=0, rate=5000.0), now=0.001)
        Wait(until=0.002, items=54)
    """

    max_size: int
    max_wait: float
    target_wait: float = 0.0015
    """Seconds after the first item at which a batch that will not fill closes."""
    batch_cost: float = 0.0
    """The share of the fixed policy's CPU per item that goes to its batches' own cost
    (per-batch work: a model call, a round trip; 0: not counted, below 1). A share rather
    than a cost per batch in items' worth: the CPU per item falls as the rate rises (the
    reads and wake-ups are spread over more items) and the fixed policy's batches grow,
    and on the machine measured this share stayed about the same from 2k to 10k items
    per second while the cost in items' worth tripled. ``iotstream bench batching
    --batch-cost 0`` fits it for the worker."""
    cpu_budget: float = 0.10
    """With ``batch_cost``: the CPU per item this policy may spend over the fixed policy's
    at the same rate (0.10: 10 % more)."""
    _floor_share: float = field(init=False, repr=False, compare=False)
    """:meth:`floor` over :meth:`fixed_batch`: a constant of ``batch_cost`` and
    ``cpu_budget``."""

    def __post_init__(self) -> None:
        _check(self.max_size, self.max_wait)
        if not 0 <= self.target_wait <= self.max_wait:
            raise ValueError(f"target_wait must be between 0 and max_wait, got {self.target_wait}")
        if not 0 <= self.batch_cost < 1 or self.cpu_budget <= 0:
            raise ValueError(
                f"batch_cost must be in [0, 1) and cpu_budget > 0, got {self.batch_cost}, "
                f"{self.cpu_budget}"
            )
        r = self.batch_cost / (1 - self.batch_cost)  # c / f, below
        object.__setattr__(self, "_floor_share", r / (self.cpu_budget + (1 + self.cpu_budget) * r))

    def floor(self, rate: float, clump: float = 1.0) -> float:
        """The smallest batch that keeps the CPU per item within ``cpu_budget`` of the fixed
        policy's at ``rate`` items per second arriving ``clump`` at a time.

        ``f`` is the fixed policy's mean batch at that rate (:meth:`fixed_batch`). With
        ``s`` = ``batch_cost`` the share of its CPU per item that is per-batch, a batch
        costs ``c = f * s / (1 - s)`` items' worth, and an item in a batch of ``n`` costs
        ``1 + c / n``. ``1 + c / n <= (1 + cpu_budget) * (1 + c / f)`` gives ``n >= c /
        (cpu_budget + (1 + cpu_budget) * c / f)``: a fixed fraction of ``f`` (0.78 with a
        share of 0.35 and a budget of 10 %, worked out once), 0 when ``batch_cost`` is 0.

        Example:
            >>> p = AdaptivePolicy(64, 0.005, batch_cost=0.35, cpu_budget=0.1)
            >>> round(p.floor(5000.0), 1)  # the fixed policy's batches: 26 items
            20.2
            >>> round(p.floor(5000.0, clump=5.0), 1)  # 30 items
            23.3
        """
        return self._floor_share * self.fixed_batch(rate, clump) if self.batch_cost else 0.0

    def fixed_batch(self, rate: float, clump: float = 1.0) -> float:
        """The fixed policy's mean batch at ``rate`` items per second arriving ``clump`` at
        a time: what the floor's budget is measured against.

        A fixed batch holds the clump that opens it and what arrives in the ``max_wait``
        after (read at the deadline): ``m = rate * max_wait + clump`` items on average (at
        least 1). Arrivals from many independent devices are a Poisson stream, so the count
        varies by about ``sqrt(m)``, and a batch that would hold more than ``max_size``
        stops there: the mean is ``E[min(X, max_size)]``, ``X`` normal with mean ``m`` and
        variance ``m``. Near ``max_size`` that is well below ``min(m, max_size)``: at 10k
        items per second (``m`` ~62, ``max_size`` 64) about half the fixed policy's batches
        stop at 64 and the mean is ~59.6, as measured (``iotstream bench batching``).

        Example:
            >>> p = AdaptivePolicy(64, 0.005)
            >>> round(p.fixed_batch(5000.0, clump=5.0), 1)  # far below max_size: m
            30.0
            >>> round(p.fixed_batch(10000.0, clump=11.7), 1)  # m = 61.7
            59.6
            >>> round(p.fixed_batch(30000.0, clump=30.0), 1)  # always full
            64.0
        """
        mean = max(1.0, rate * self.max_wait + clump)
        sd = math.sqrt(mean)
        z = (self.max_size - mean) / sd
        if z > 5:  # the cap is out of reach (what it takes off is below 1e-6 * sd)
            return mean
        # E[(X - max_size)+] for X ~ N(mean, sd^2): sd * (pdf(z) - z * P(Z > z))
        over = sd * (math.exp(-z * z / 2) / _SQRT_2PI - z * 0.5 * math.erfc(z / _SQRT_2))
        return max(1.0, mean - over)

    def decide(self, state: BatchState, now: float) -> Wait | None:
        """Close now (``None``) or what to wait for; see the class docstring."""
        room = self.max_size - state.size
        deadline = state.opened_at + self.max_wait
        if room <= 0 or now >= deadline:
            return None
        if state.queued:
            return Wait(deadline, min(room, state.queued))
        rate = state.rate
        target = state.opened_at + self.target_wait
        fill_by = min(deadline, target + self.target_wait)
        if rate > 0 and now + room / rate <= fill_by:
            return Wait(fill_by, room)
        floor = self.floor(rate, state.clump) if self.batch_cost and rate > 0 else 0.0
        if state.size < floor:
            if state.arrived is not None:  # the floor's worth of arrivals after the first
                expected = min(deadline, state.arrived + floor / rate)
            else:  # it opened with about a clump, arriving over the time before
                expected = min(deadline, state.opened_at + max(0.0, floor + 1 - state.clump) / rate)
            if now < expected and rate * (expected - now) >= 1:
                return Wait(expected, room)
        if now >= target or rate * (target - now) < 1:
            return None
        return Wait(target, room)


def make_policy(
    name: Literal["fixed", "adaptive"],
    max_size: int,
    max_wait: float,
    target_wait: float = 0.0015,
    batch_cost: float = 0.0,
    cpu_budget: float = 0.10,
) -> FixedPolicy | AdaptivePolicy:
    """The policy a setting names (``fixed`` or ``adaptive``; the last three parameters are
    the adaptive policy's)."""
    if name == "fixed":
        return FixedPolicy(max_size, max_wait)
    if name == "adaptive":
        return AdaptivePolicy(
            max_size, max_wait, min(target_wait, max_wait), batch_cost, cpu_budget
        )
    raise ValueError(f"unknown batch policy {name!r} (fixed, adaptive)")
