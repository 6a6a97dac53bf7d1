"""A bounded hand-over buffer between paho's network thread and the worker thread."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypedDict, TypeVar

__all__ = ["BoundedBuffer", "TakeWhen"]

T = TypeVar("T")


class TakeWhen(TypedDict, total=False):
    """When a :meth:`BoundedBuffer.take` may return before its timeout: the keywords every
    ``take`` in front of a buffer passes on unchanged (defaults: :meth:`BoundedBuffer.take`)."""

    wait_for: int
    """Return once this many items are there (default 1)."""
    first_within: float | None
    """Also return once the oldest item has waited this long (default None: no such bound)."""


class BoundedBuffer(Generic[T]):
    """FIFO with a size limit. Overflow policy: **block the producer** (backpressure).

    The consumer takes many items per lock round trip (:meth:`take`) and can ask to sleep
    until a whole batch is there (``wait_for``), so at tens of thousands of items per second
    neither side is woken for every item.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self._producers_waiting = 0
        self._wanted = 0
        """How many items the waiting consumer needs before it wakes (0: none waiting)."""
        self._within: float | None = None
        """... or how long the oldest item may wait before it wakes (None: no such limit)."""
        self._first_at = 0.0
        """When the oldest item in the buffer was put (``time.monotonic()``; approximate
        once a take has left some behind: the time of the take)."""

    def __len__(self) -> int:
        return len(self._items)

    def close(self) -> None:
        """Stop accepting items and release a waiting producer (its items are dropped: the
        consumer is gone, and an unacknowledged reading comes back from the broker)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def put(self, item: T) -> float:
        """Append ``item``, waiting while the buffer is full; returns seconds waited.

        After :meth:`close` the item is dropped at once.
        """
        return self.put_many([item])

    def put_many(self, items: list[T]) -> float:
        """Append ``items`` in order, waiting until all fit; returns seconds waited.

        A list longer than ``maxsize`` goes in whole once the buffer is empty, so the buffer
        never holds more than ``max(maxsize, len(items))``. After :meth:`close` the items
        are dropped at once.
        """
        n = len(items)
        with self._cond:
            waited = 0.0
            if self._items and len(self._items) + n > self.maxsize and not self._closed:
                started = time.monotonic()
                self._producers_waiting += 1
                if self._wanted:  # the buffer is as full as it gets: the consumer goes on
                    self._cond.notify_all()
                while self._items and len(self._items) + n > self.maxsize and not self._closed:
                    self._cond.wait()
                self._producers_waiting -= 1
                waited = time.monotonic() - started
            if self._closed or not n:
                return waited
            if not self._items:
                self._first_at = time.monotonic()
            self._items.extend(items)
            if self._wanted and (
                len(self._items) >= self._wanted
                or (self._within is not None and time.monotonic() - self._first_at >= self._within)
            ):
                self._cond.notify_all()
            return waited

    def take(
        self,
        max_items: int,
        timeout: float,
        *,
        wait_for: int = 1,
        first_within: float | None = None,
    ) -> list[T]:
        """Up to ``max_items`` items, once ``wait_for`` of them are there or ``timeout``
        seconds have passed (then whatever there is, possibly nothing).

        With ``first_within`` the consumer also wakes once the oldest item has waited that
        long, and a first item alone does not wake it: the producer checks the age at each
        put, and the consumer looks again at least every ``first_within`` seconds while
        the buffer is empty, so no item waits longer unnoticed. A caller that would open a
        batch with the first item and then wait for more (the worker's run loop) is woken
        once per batch instead of twice.
        """
        wanted = max(1, min(wait_for, self.maxsize))
        with self._cond:
            if (
                len(self._items) < wanted
                and timeout > 0
                and not self._closed
                and not self._producers_waiting
            ):
                deadline = time.monotonic() + timeout
                self._wanted = wanted
                self._within = first_within
                try:
                    while (
                        len(self._items) < wanted
                        and not self._closed
                        and not self._producers_waiting
                    ):
                        now = time.monotonic()
                        if first_within is None:
                            until = deadline
                        elif self._items:
                            until = self._first_at + first_within
                        else:
                            until = min(deadline, now + first_within)
                        if now >= until:
                            break
                        self._cond.wait(until - now)
                finally:
                    self._wanted = 0
                    self._within = None
            n = min(max_items, len(self._items))
            if not n:
                return []
            popleft = self._items.popleft
            out = [popleft() for _ in range(n)]
            if self._items:
                self._first_at = time.monotonic()
            if self._producers_waiting:
                self._cond.notify_all()
            return out
