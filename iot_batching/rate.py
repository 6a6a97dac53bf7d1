"""A recent arrival rate: an exponentially decaying count. Pure: the clock is a parameter."""

from __future__ import annotations

import math

__all__ = ["ArrivalRate"]


class ArrivalRate:
    """Items per second over roughly the last ``window`` seconds.

    Every arrival adds one to a count that decays as ``exp(-elapsed / window)``; in a steady
    stream of ``r`` items per second the count settles at ``r * window``, so the rate is
    ``count / window``. Clumped arrivals (a socket read handing over ten readings at once)
    count the same as spread ones, idle time decays the rate towards zero, and a burst
    raises it within a fraction of ``window``. The first items after an idle period read as
    a low rate: the policy then errs towards closing batches early (low latency).

    Example:
        >>> r = ArrivalRate(window=0.05)
        >>> for k in range(1000):
        ...     r.note(1, now=k / 1000)  # 1,000 items per second for a second
        >>> 950 < r.per_second(now=1.0) < 1050
        True
    """

    def __init__(self, window: float = 0.05) -> None:
        if window <= 0:
            raise ValueError(f"window must be > 0, got {window}")
        self.window = window
        self._count = 0.0
        self._at = 0.0
        self.clump = 1.0
        """Items per arrival (per :meth:`note`), a moving average over ~16 arrivals: how
        many items come together (one socket read's hand-over, say)."""

    def note(self, n: int, now: float) -> None:
        """Count ``n`` items that arrived together by ``now``."""
        self._count = self._decayed(now) + n
        self._at = max(self._at, now)
        self.clump += (n - self.clump) / 16

    def per_second(self, now: float) -> float:
        """The recent rate as seen at ``now``."""
        return self._decayed(now) / self.window

    def _decayed(self, now: float) -> float:
        if not self._count or now <= self._at:
            return self._count
        return self._count * math.exp((self._at - now) / self.window)
