"""One client's bounded send queue and its overflow policy. Pure (no I/O, the clock is
injected): the connection's sender task drains it. The connection's state (subscribed,
catching up, closing ...) is its :class:`~gateway.session_state.SessionMachine`.

Policy when more than ``limit`` predictions wait:
    * ``disconnect`` (default): the channel is marked slow and the connection is closed with
      :attr:`iot_contract.CloseCode.SLOW_CONSUMER`; the client resumes with ``since``.
    * ``coalesce`` (the client subscribed with ``coalesce: true``): only the newest prediction
      per device is kept, in stream order; the dropped ones are counted.

Latest-state mode (the client subscribed with ``latest_every_ms``, for fleet views): the
channel keeps only the newest prediction per device (superseded ones are counted in
:attr:`ClientChannel.superseded`, not as drops) and hands them out at most once every
``latest_every`` seconds, so a browser showing 1,000 tiles receives 1,000 items per tick
whatever the fleet's rate. Bounded by ``limit`` devices (beyond that the least recently
updated device is dropped, and counted).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from gateway.filters import SubscriptionFilter
from gateway.items import StreamItem, StreamKey
from gateway.session_state import Event, SessionMachine, State, Timeouts

__all__ = ["MAX_PENDING_FRAMES", "ClientChannel", "Drained"]

MAX_PENDING_FRAMES: Final = 1000
"""Control frames (replay pages, errors, pongs) that may wait; more closes the client as slow
(a client re-subscribing with old offsets without reading would otherwise grow memory)."""


@dataclass(slots=True)
class Drained:
    """What the sender takes in one go: control frames first, then predictions."""

    frames: list[str]
    items: list[StreamItem]
    last_id: str | None


@dataclass(eq=False, slots=True)
class ClientChannel:
    """Queue between the hub (producer) and one connection's sender task (consumer).

    Attributes:
        limit: most predictions that may wait.
        coalesce: overflow policy, see the module docstring.
        filter: the current subscription; ``None`` means not subscribed.
        machine: the connection's state; while ``CATCHING_UP`` live items wait behind the
            replay, from ``CLOSING`` on nothing more is queued.
        clock: monotonic clock (seconds) stamped on state changes; tests pass a fake one.
        on_close_request: called when a close is requested (the sender interrupts a write).
        position: stream position everything queued so far covers (for ``last_id``).
        dropped: predictions dropped by coalescing.
        latest_every: latest-state mode's tick in seconds (``None``: every item is sent).
        superseded: predictions replaced by a newer one of the same device in latest-state
            mode before they were sent.
    """

    limit: int
    coalesce: bool = False
    filter: SubscriptionFilter | None = None
    machine: SessionMachine = field(default_factory=lambda: SessionMachine(State.IDLE))
    clock: Callable[[], float] = time.monotonic
    on_close_request: Callable[[], None] | None = None
    position: str | None = None
    dropped: int = 0
    latest_every: float | None = None
    superseded: int = 0
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    _items: deque[StreamItem] = field(default_factory=deque)
    _frames: deque[str] = field(default_factory=deque)
    _latest: dict[str, StreamItem] = field(default_factory=dict)
    _next_tick: float = 0.0
    _last_key: StreamKey = (0, 0)
    _replayed_key: StreamKey = (0, 0)

    def __len__(self) -> int:
        return len(self._items) + len(self._latest)

    def offer(self, items: list[StreamItem], position: str) -> int:
        """Queue ``items`` (already filtered, in stream order) up to ``position``.

        Items at or before the last one handed to the client are skipped, so a replay and
        the live feed never duplicate at their seam. Returns the number of items dropped by
        coalescing; sets :attr:`slow` when the disconnect policy is triggered.
        """
        if self.machine.closing_or_closed:
            return 0
        last = self._last_key
        fresh = [i for i in items if i.key > last] if items and items[0].key <= last else items
        if fresh and self.latest_every is not None:
            return self._offer_latest(fresh, position)
        if fresh:
            self._items.extend(fresh)
            self._last_key = fresh[-1].key
        self.position = position
        dropped = 0
        if len(self._items) > self.limit:
            if self.coalesce:
                dropped = self._coalesce()
            else:
                self.request_close(Event.OVERFLOW)
        if fresh and not self.catching_up:
            self.wakeup.set()
        return dropped

    def _offer_latest(self, fresh: list[StreamItem], position: str) -> int:
        latest = self._latest
        was_empty = not latest
        before = len(latest) + len(fresh)
        for i in fresh:
            latest.pop(i.device_id, None)  # re-inserted last: the dict stays in stream order
            latest[i.device_id] = i
        self.superseded += before - len(latest)
        self._last_key = fresh[-1].key
        self.position = position
        dropped = 0
        while len(latest) > self.limit:  # more devices than the bound: the stalest goes
            del latest[next(iter(latest))]
            dropped += 1
        self.dropped += dropped
        # The sender sleeps until the next tick once something waits; it needs waking only
        # when the first item arrives (to start its timer) or the tick is already due.
        if not self.catching_up and (was_empty or self.clock() >= self._next_tick):
            self.wakeup.set()
        return dropped

    def hold_for(self) -> float | None:
        """Seconds the sender should wait before draining again, ``None`` for "until woken":
        in latest-state mode, the time left until the next tick while items wait."""
        if self.latest_every is None or not self._latest or self.catching_up:
            return None
        return max(0.0, self._next_tick - self.clock())

    @property
    def slow(self) -> bool:
        """True when closing as a slow consumer (queue overflow or a hung write)."""
        return self.machine.slow

    @property
    def catching_up(self) -> bool:
        """A resume is being replayed; live items wait behind it."""
        return self.machine.state is State.CATCHING_UP

    @property
    def close_request(self) -> tuple[int, str] | None:
        """``(code, reason)`` once the connection must close."""
        m = self.machine
        return None if m.close_code is None else (m.close_code, m.close_reason)

    def request_close(self, cause: Event) -> None:
        """Ask the sender to close the connection for ``cause`` (the first request wins)."""
        if self.machine.request_close(cause, self.clock()):
            self._closing()

    def _closing(self) -> None:
        self.wakeup.set()
        if self.on_close_request is not None:
            self.on_close_request()

    def sweep(self, now: float, wall: float, timeouts: Timeouts) -> None:
        """Periodic check, see :meth:`SessionMachine.sweep`; wakes the sender for a close or
        a heartbeat."""
        if self.machine.sweep(now, wall, timeouts) is not None:
            self._closing()
        elif self.machine.heartbeat_due:
            self.wakeup.set()

    def push_frame(self, frame: str) -> None:
        """Queue a control frame (``subscribed``, ``error``, a replay page); it goes out
        before any queued prediction."""
        if self.machine.closing_or_closed:
            return
        self._frames.append(frame)
        if len(self._frames) > MAX_PENDING_FRAMES:
            self._frames.clear()
            self.request_close(Event.OVERFLOW)
        self.wakeup.set()

    @property
    def idle(self) -> bool:
        """Subscribed, caught up and nothing waiting (``position`` is then fully delivered)."""
        return (
            self.filter is not None
            and self.machine.state is State.LIVE
            and not self._items
            and not self._latest
        )

    def begin(
        self,
        subscription: SubscriptionFilter,
        coalesce: bool,
        position: str,
        latest_every: float | None = None,
    ) -> None:
        """Start a new subscription at stream ``position``: forget queued items and hold live
        ones back until :meth:`finish_catch_up`; ``latest_every`` (seconds) selects the
        latest-state mode."""
        self.machine.fire(Event.SUBSCRIBE, self.clock())
        self.filter = subscription
        self.coalesce = coalesce
        self.latest_every = latest_every
        self.position = position
        self._items.clear()
        self._latest.clear()
        self._next_tick = -math.inf
        self._last_key = (0, 0)
        self._replayed_key = (0, 0)

    def mark_replayed(self, key: StreamKey) -> None:
        """Record that the replay covered everything up to ``key``."""
        self._replayed_key = max(self._replayed_key, key)

    def finish_catch_up(self) -> None:
        """Release the live items that arrived during the replay, minus any it covered
        (nothing to do once closing)."""
        if self.machine.state is not State.CATCHING_UP:
            return
        done = self._replayed_key
        if self._items and self._items[0].key <= done:
            self._items = deque(i for i in self._items if i.key > done)
        if self._latest:
            self._latest = {d: i for d, i in self._latest.items() if i.key > done}
        self._last_key = max(done, self._last_key)
        self.machine.fire(Event.CAUGHT_UP, self.clock())
        self.wakeup.set()

    def stop(self) -> None:
        """Unsubscribe: drop queued predictions and stop receiving."""
        if self.machine.is_open:
            self.machine.fire(Event.UNSUBSCRIBE, self.clock())
        self.filter = None
        self._items.clear()
        self._latest.clear()

    def drain(self, max_items: int) -> Drained:
        """Take the control frames and up to ``max_items`` predictions (all of them if
        caught up and fewer wait; in latest-state mode only when the tick is due)."""
        frames = list(self._frames)
        self._frames.clear()
        if self.latest_every is not None:
            latest = self._drain_latest(max_items)
            return Drained(frames, latest, None if self._latest else self.position)
        items: list[StreamItem] = []
        if not self.catching_up and self._items:
            if len(self._items) <= max_items:
                items = list(self._items)
                self._items.clear()
            else:
                items = [self._items.popleft() for _ in range(max_items)]
        last_id = self.position if not self._items else (items[-1].id if items else None)
        if self._items or self._frames:
            self.wakeup.set()
        return Drained(frames, items, last_id)

    def _drain_latest(self, max_items: int) -> list[StreamItem]:
        now = self.clock()
        if self.catching_up or not self._latest or now < self._next_tick or max_items <= 0:
            return []
        latest = self._latest
        if len(latest) > max_items:  # the rest goes in the next frame, right away
            self.wakeup.set()
            return [latest.pop(d) for d in list(latest)[:max_items]]
        items = list(latest.values())
        latest.clear()
        self._next_tick = now + (self.latest_every or 0.0)
        return items

    def _coalesce(self) -> int:
        before = len(self._items)
        newest: dict[str, StreamItem] = {}
        for item in self._items:
            newest[item.device_id] = item
        kept = sorted(newest.values(), key=lambda i: i.key)
        if len(kept) > self.limit:
            kept = kept[-self.limit :]
        self._items = deque(kept)
        dropped = before - len(kept)
        self.dropped += dropped
        return dropped
