"""A bounded hand-over buffer between paho's network thread and the worker thread."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, TypeVar

__all__ = ["BoundedBuffer"]

T = TypeVar("T")


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
            self._items.extend(items)
            if self._wanted and len(self._items) >= self._wanted:
                self._cond.notify_all()
            return waited

    def take(self, max_items: int, timeout: float, *, wait_for: int = 1) -> list[T]:
        """Up to ``max_items`` items, once ``wait_for`` of them are there or ``timeout``
        seconds have passed (then whatever there is, possibly nothing)."""
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
                try:
                    while (
                        len(self._items) < wanted
                        and not self._closed
                        and not self._producers_waiting
                    ):
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            break
                        self._cond.wait(remaining)
                finally:
                    self._wanted = 0
            n = min(max_items, len(self._items))
            if not n:
                return []
            popleft = self._items.popleft
            out = [popleft() for _ in range(n)]
            if self._producers_waiting:
                self._cond.notify_all()
            return out
