"""In-process fan-out: one stream reader publishes each batch once; the hub filters it for
every subscribed client and queues it on that client's :class:`ClientChannel`.

Clients whose filters are equal share one filtering pass, so 1,000 dashboards watching the
whole fleet cost one pass per batch, not 1,000. Publishing never awaits: a slow client can
only fill its own bounded queue.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway.channel import ClientChannel
from gateway.items import StreamItem
from gateway.session_state import Timeouts

__all__ = ["Hub"]


class Hub:
    """The set of connected clients and the stream position they are fed from.

    Attributes:
        position: id of the last entry published (``None`` before the first read).
    """

    def __init__(self, on_slow: Callable[[ClientChannel], None] | None = None) -> None:
        self._channels: set[ClientChannel] = set()
        self._on_slow = on_slow
        self.position: str | None = None
        self.published_items = 0
        self.coalesced_drops = 0

    def __len__(self) -> int:
        return len(self._channels)

    @property
    def channels(self) -> frozenset[ClientChannel]:
        """The registered channels."""
        return frozenset(self._channels)

    def register(self, channel: ClientChannel) -> None:
        """Start feeding ``channel`` (it receives nothing until it has a filter)."""
        self._channels.add(channel)

    def unregister(self, channel: ClientChannel) -> None:
        """Stop feeding ``channel``; unknown channels are ignored."""
        self._channels.discard(channel)

    def sweep(self, now: float, wall: float, timeouts: Timeouts) -> None:
        """Run :meth:`ClientChannel.sweep` on every channel."""
        for channel in list(self._channels):
            channel.sweep(now, wall, timeouts)

    def publish(self, items: Sequence[StreamItem], position: str) -> None:
        """Fan ``items`` (in stream order, ending at ``position``) out to every channel."""
        self.position = position
        self.published_items += len(items)
        shared: dict[tuple[object, ...], list[StreamItem]] = {}
        slow: list[ClientChannel] = []
        for channel in self._channels:
            flt = channel.filter
            if flt is None:
                continue
            key = flt.key
            selected = shared.get(key)
            if selected is None:
                selected = flt.select(items)
                shared[key] = selected
            self.coalesced_drops += channel.offer(selected, position)
            if channel.slow:
                slow.append(channel)
        for channel in slow:  # it still counts as a connection until it is gone
            self._channels.discard(channel)
            if self._on_slow is not None:
                self._on_slow(channel)
