"""Cut policies: given an open batch, the input queue, the clock and the recent arrival
rate, close the batch now or say how long and for how many more items to wait. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["AdaptivePolicy", "BatchState", "CutPolicy", "FixedPolicy", "Wait", "make_policy"]


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

    def __post_init__(self) -> None:
        _check(self.max_size, self.max_wait)
        if not 0 <= self.target_wait <= self.max_wait:
            raise ValueError(f"target_wait must be between 0 and max_wait, got {self.target_wait}")

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
        if now >= target or rate * (target - now) < 1:
            return None
        return Wait(target, room)


def make_policy(
    name: Literal["fixed", "adaptive"],
    max_size: int,
    max_wait: float,
    target_wait: float = 0.0015,
) -> FixedPolicy | AdaptivePolicy:
    """The policy a setting names (``fixed`` or ``adaptive``)."""
    if name == "fixed":
        return FixedPolicy(max_size, max_wait)
    if name == "adaptive":
        return AdaptivePolicy(max_size, max_wait, min(target_wait, max_wait))
    raise ValueError(f"unknown batch policy {name!r} (fixed, adaptive)")
