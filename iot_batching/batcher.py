"""Collects items into batches and closes them as a :class:`CutPolicy` says. Pure: the
clock and the input's queue length are parameters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from iot_batching.policy import BatchState, CutPolicy, Wait
from iot_batching.rate import ArrivalRate

__all__ = ["Batcher"]

T = TypeVar("T")


class Batcher(Generic[T]):
    """An open batch, its policy and the recent arrival rate.

    A caller that drains an input (the worker's run loop) adds what it took with
    :meth:`add_many`, telling how many items are still queued, and sleeps as :meth:`wait`
    says; a caller that gets one item at a time (a request handler) uses :meth:`add` and
    looks again at ``wait(now).until``.

    Args:
        policy: when to close (:class:`FixedPolicy`, :class:`AdaptivePolicy`).
        rate_window: seconds of history in the arrival rate the policy sees.

    Example:
        >>> from iot_batching import FixedPolicy
        >>> b = Batcher[int](FixedPolicy(max_size=2, max_wait=0.005))
        >>> b.add(1, now=0.0) is None
        True
        >>> b.add(2, now=0.001)
        [1, 2]
    """

    def __init__(self, policy: CutPolicy, rate_window: float = 0.05) -> None:
        self.policy = policy
        self.max_size = policy.max_size
        self.rate = ArrivalRate(rate_window)
        self._items: list[T] = []
        self._opened_at = 0.0
        self._arrived: float | None = None
        self._decided: tuple[tuple[float, int, int], Wait | None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def opened_at(self) -> float | None:
        """When the open batch was opened (the caller's clock; None: no batch open). Every
        batch closes by ``opened_at + policy.max_wait``."""
        return self._opened_at if self._items else None

    def add(self, item: T, now: float, queued: int = 0) -> list[T] | None:
        """Add one item; return the batch if that closed it."""
        closed = self.add_many((item,), now, queued)
        return closed[0] if closed else None

    def add_many(
        self,
        items: Iterable[T],
        now: float,
        queued: int = 0,
        *,
        first_arrived: float | None = None,
        first_arrived_est: float | None = None,
    ) -> list[list[T]]:
        """Add items that arrived by ``now``, in order; ``queued`` more are waiting in the
        input. Returns the batches this closed: every one that filled, then the open one if
        the policy closes it now. Items taken together join the open batch before it is
        judged, so a batch found overdue leaves with everything that arrived meanwhile.

        ``first_arrived``: when the first of ``items`` arrived, if earlier than ``now``; a
        batch it opens counts its age from then (a caller woken once per batch, see
        :meth:`ahead`, takes its items some time after the first came).
        ``first_arrived_est``: when the first of ``items`` reached the caller's input,
        estimated, if known (its bytes may have waited in a socket before ``first_arrived``):
        the adaptive policy times a batch it opens from then (:attr:`BatchState.arrived`)."""
        closed: list[list[T]] = []
        added = 0
        for item in items:
            if not self._items:
                first = not added
                self._opened_at = (
                    min(first_arrived, now) if first_arrived is not None and first else now
                )
                self._arrived = (
                    min(first_arrived_est, self._opened_at)
                    if first_arrived_est is not None and first
                    else None
                )
            self._items.append(item)
            added += 1
            if len(self._items) >= self.max_size:
                closed.append(self._take())
        if added:
            self.rate.note(added, now)
        if (batch := self.poll(now, queued)) is not None:
            closed.append(batch)
        return closed

    def wait(self, now: float, queued: int = 0) -> Wait | None:
        """What the open batch waits for (``until`` may be ``now`` or past: it is due);
        ``None`` when no batch is open."""
        if not self._items:
            return None
        return self._decide(now, queued) or Wait(now, 0)

    def ahead(self, now: float) -> Wait | None:
        """What a batch that a first item opened at ``now`` would wait for, so that a caller
        with no batch open can sleep through the first arrival and be woken once per batch
        (``until``: when that batch would be due; ``items``: how many more would fill it).
        ``None`` when that first item should wake the caller: the policy would close the
        batch at once, or fewer than one more item is expected before it is due (idle or
        trickle: a timer would cost a wake-up per item anyway)."""
        rate = self.rate.per_second(now)
        wait = self.policy.decide(BatchState(1, now, 0, rate, self.rate.clump), now)
        if wait is None or rate * (wait.until - now) < 1:
            return None
        return wait

    def poll(self, now: float, queued: int = 0) -> list[T] | None:
        """Return the open batch if the policy closes it at ``now``, else ``None``."""
        if self._items and self._decide(now, queued) is None:
            return self._take()
        return None

    def _decide(self, now: float, queued: int) -> Wait | None:
        """The policy's decision on the open batch; asked again with nothing changed (the
        run loop polls at a hand-over, then asks how long to wait, at the same ``now``),
        the last answer: policies are pure, and an adaptive decision costs ~2 us."""
        key = (now, queued, len(self._items))
        if self._decided is not None and self._decided[0] == key:
            return self._decided[1]
        decision = self.policy.decide(self._state(now, queued), now)
        self._decided = (key, decision)
        return decision

    def flush(self) -> list[T] | None:
        """Return the open batch now, whatever its age (shutdown)."""
        return self._take() if self._items else None

    def _state(self, now: float, queued: int) -> BatchState:
        return BatchState(
            len(self._items),
            self._opened_at,
            queued,
            self.rate.per_second(now),
            self.rate.clump,
            self._arrived,
        )

    def _take(self) -> list[T]:
        items, self._items = self._items, []
        self._decided = None
        return items
