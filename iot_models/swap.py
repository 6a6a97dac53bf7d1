"""A scorer whose inference core can be replaced while it serves, between two batches.

The follower thread loads, verifies and warms a new core on its own time, then
:meth:`SwappableCore.swap` replaces the reference in one assignment. :meth:`~SwappableCore.infer`
reads the reference once per batch, so a batch is scored by one core from start to end:
batches that started before the swap finish on the old core, every later one runs on the
new. Nothing is re-queued or dropped: readings waiting in the batcher simply meet the new
core, and acknowledgements do not depend on which core scored a reading. The old core
(and its ONNX Runtime sessions) is freed when its last batch lets go of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TypedDict

from iot_contract import Reading
from iot_models.core import BatchResult, InferenceCore

__all__ = ["SwapHooks", "SwappableCore"]

log = logging.getLogger(__name__)


class SwapHooks(TypedDict, total=False):
    """The callbacks of a :class:`SwappableCore`, as keywords (what a wrapper that builds
    one passes on unchanged)."""

    on_scored: Callable[[BatchResult], None] | None
    """Called with each batch's result (per-version metrics), on the caller's thread."""
    on_swap: Callable[[InferenceCore, InferenceCore], None] | None
    """Called with ``(old, new)`` right after a swap, on the swapping thread."""


class SwappableCore:
    """Holds the current :class:`InferenceCore`; satisfies :class:`iot_models.core.Scorer`.

    Args:
        core: what serves until the first swap.
        on_scored: called with each batch's result (per-version metrics), on the caller's
            thread.
        on_swap: called with ``(old, new)`` right after a swap, on the swapping thread.
    """

    def __init__(
        self,
        core: InferenceCore,
        *,
        on_scored: Callable[[BatchResult], None] | None = None,
        on_swap: Callable[[InferenceCore, InferenceCore], None] | None = None,
    ) -> None:
        self._current = core
        self._lock = threading.Lock()
        self._on_scored = on_scored
        self._on_swap = on_swap
        self.swaps = 0
        """Cores swapped in so far."""

    @property
    def current(self) -> InferenceCore:
        """The core the next batch runs on."""
        return self._current

    def swap(self, core: InferenceCore) -> InferenceCore:
        """Serve ``core`` from the next batch on; returns the core it replaces. Thread-safe."""
        with self._lock:
            old, self._current = self._current, core
            self.swaps += 1
        log.info("now serving %s (was %s)", core.describe(), old.describe())
        if self._on_swap is not None:
            self._on_swap(old, core)
        return old

    def infer(
        self, readings: Sequence[Reading], received_ts: float | Sequence[float]
    ) -> BatchResult:
        """Score one batch on one core (the reference is read once)."""
        result = self._current.infer(readings, received_ts)
        if self._on_scored is not None:
            self._on_scored(result)
        return result
