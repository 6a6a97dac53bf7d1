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

    The consumer takes many items per lock round trip (:meth:`take`), which is what makes
    it cheaper than :class:`queue.Queue` at tens of thousands of items per second.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be >= 1, got {maxsize}")
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def close(self) -> None:
        """Stop accepting items and release a waiting producer (its item is dropped: the
        consumer is gone, and an unacknowledged reading comes back from the broker)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def put(self, item: T) -> float:
        """Append ``item``, waiting while the buffer is full; returns seconds waited.

        After :meth:`close` the item is dropped at once.
        """
        with self._cond:
            waited = 0.0
            if len(self._items) >= self.maxsize and not self._closed:
                started = time.monotonic()
                while len(self._items) >= self.maxsize and not self._closed:
                    self._cond.wait()
                waited = time.monotonic() - started
            if self._closed:
                return waited
            self._items.append(item)
            if len(self._items) == 1:
                self._cond.notify_all()
            return waited

    def take(self, max_items: int, timeout: float) -> list[T]:
        """Up to ``max_items`` items, waiting up to ``timeout`` seconds for the first."""
        with self._cond:
            if not self._items and timeout > 0:
                self._cond.wait(timeout)
            n = min(max_items, len(self._items))
            if not n:
                return []
            was_full = len(self._items) >= self.maxsize
            popleft = self._items.popleft
            out = [popleft() for _ in range(n)]
            if was_full:
                self._cond.notify_all()
            return out
