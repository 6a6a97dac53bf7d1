"""The micro-batch cut policy: close a batch at ``max_size`` items or ``max_wait`` seconds
after its first item, whichever comes first. Pure: the clock is a parameter.
"""

from __future__ import annotations

from typing import Generic, TypeVar

__all__ = ["Batcher"]

T = TypeVar("T")


class Batcher(Generic[T]):
    """Collects items into batches.

    Args:
        max_size: a batch closes as soon as it holds this many items.
        max_wait: seconds after a batch's first item at which it closes, however small.

    Example:
        >>> b = Batcher[int](max_size=2, max_wait=0.005)
        >>> b.add(1, now=0.0) is None
        True
        >>> b.add(2, now=0.001)
        [1, 2]
    """

    def __init__(self, max_size: int, max_wait: float) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait}")
        self.max_size = max_size
        self.max_wait = max_wait
        self._items: list[T] = []
        self._opened_at = 0.0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def deadline(self) -> float | None:
        """When the open batch must close, or ``None`` if no batch is open."""
        return self._opened_at + self.max_wait if self._items else None

    def add(self, item: T, now: float) -> list[T] | None:
        """Add ``item``; return the closed batch if this item filled it (or it was overdue)."""
        if not self._items:
            self._opened_at = now
        self._items.append(item)
        if len(self._items) >= self.max_size or now >= self._opened_at + self.max_wait:
            return self._take()
        return None

    def flush_due(self, now: float) -> list[T] | None:
        """Return the open batch if its deadline has passed, else ``None``."""
        if self._items and now >= self._opened_at + self.max_wait:
            return self._take()
        return None

    def flush(self) -> list[T] | None:
        """Return the open batch now, whatever its age (shutdown)."""
        return self._take() if self._items else None

    def _take(self) -> list[T]:
        items, self._items = self._items, []
        return items
