"""A scorer whose inference core can be replaced while it serves, between two batches.

The follower thread loads, verifies and warms a new core on its own time, then
:meth:`SwappableCore.offer` hands it over. The caller's thread adopts it at the start of
its next :meth:`~SwappableCore.infer`: a batch is scored by one core from start to end,
the batch before by the old core, the one after by the new. Nothing is re-queued or
dropped: readings waiting in the batcher simply meet the new core, and acknowledgements
do not depend on which core scored a reading.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from iot_contract import Reading
from iot_models.core import BatchResult, InferenceCore

__all__ = ["SwappableCore"]

log = logging.getLogger(__name__)


class SwappableCore:
    """Holds the current :class:`InferenceCore`; satisfies :class:`iot_models.core.Scorer`.

    Args:
        core: what serves until a new core is offered.
        on_scored: called with each batch's result (per-version metrics), on the caller's
            thread.
        on_swap: called with ``(old, new)`` right after a swap, on the caller's thread.
    """

    def __init__(
        self,
        core: InferenceCore,
        *,
        on_scored: Callable[[BatchResult], None] | None = None,
        on_swap: Callable[[InferenceCore, InferenceCore], None] | None = None,
    ) -> None:
        self._current = core
        self._offered: InferenceCore | None = None
        self._lock = threading.Lock()
        self._on_scored = on_scored
        self._on_swap = on_swap
        self.swaps = 0
        """Cores adopted so far."""

    @property
    def current(self) -> InferenceCore:
        """The core scoring now (an offered one once the next batch has adopted it)."""
        return self._current

    def offer(self, core: InferenceCore) -> None:
        """Serve ``core`` from the next batch on (replacing a core offered but not yet
        adopted). Thread-safe."""
        with self._lock:
            self._offered = core

    def adopt(self) -> bool:
        """Adopt an offered core now, if there is one (the run loop calls it through
        :meth:`infer`; tests and idle servers may call it directly). Returns whether it
        swapped."""
        with self._lock:
            new, self._offered = self._offered, None
        if new is None:
            return False
        old, self._current = self._current, new
        self.swaps += 1
        log.info("now serving %s (was %s)", new.describe(), old.describe())
        if self._on_swap is not None:
            self._on_swap(old, new)
        return True

    def infer(
        self, readings: Sequence[Reading], received_ts: float | Sequence[float]
    ) -> BatchResult:
        """Score one batch with one core: the newest offered, else the current one."""
        if self._offered is not None:  # unlocked peek: a plain attribute read
            self.adopt()
        result = self._current.infer(readings, received_ts)
        if self._on_scored is not None:
            self._on_scored(result)
        return result
