"""Per-client filters: device ids or glob patterns, models, anomalies only. Pure.

Patterns are compiled once into one regular expression, and each answer is cached per
device id (fleets have a bounded number of devices), so matching an item is a dict lookup.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from gateway.items import StreamItem

__all__ = ["DeviceMatcher", "SubscriptionFilter"]

_CACHE_LIMIT: Final = 100_000
_GLOB_CHARS: Final = frozenset("*?[")


class DeviceMatcher:
    """Matches device ids against ids and ``fnmatch`` globs (case-sensitive).

    Args:
        patterns: device ids or globs; ``*`` matches every device.
    """

    __slots__ = ("_cache", "_everything", "_literals", "_regex", "patterns")

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns: tuple[str, ...] = tuple(dict.fromkeys(patterns))
        self._everything = "*" in self.patterns
        self._literals = frozenset(p for p in self.patterns if not _GLOB_CHARS & set(p))
        globs = [fnmatch.translate(p) for p in self.patterns if _GLOB_CHARS & set(p)]
        self._regex = re.compile("|".join(globs)) if globs else None
        self._cache: dict[str, bool] = {}

    @staticmethod
    def is_literal(pattern: str) -> bool:
        """True when ``pattern`` names one device rather than a glob."""
        return not _GLOB_CHARS & set(pattern)

    def match(self, device_id: str) -> bool:
        """Whether ``device_id`` matches any pattern."""
        if self._everything:
            return True
        hit = self._cache.get(device_id)
        if hit is None:
            hit = device_id in self._literals or bool(
                self._regex is not None and self._regex.match(device_id)
            )
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[device_id] = hit
        return hit


@dataclass(slots=True)
class SubscriptionFilter:
    """What one client receives: an item passes when every condition holds.

    Attributes:
        devices: the subscription's device ids/globs.
        models: model names, or ``None`` for every model.
        anomalies_only: only predictions flagged as anomalies.
        allowed: the token's device restriction, or ``None``.
    """

    devices: DeviceMatcher
    models: frozenset[str] | None = None
    anomalies_only: bool = False
    allowed: DeviceMatcher | None = None
    _cache: dict[str, bool] = field(default_factory=dict, repr=False)
    key: tuple[object, ...] = field(init=False, repr=False)
    """Equal for filters that select the same items (the hub shares work between them)."""

    def __post_init__(self) -> None:
        self.key = (
            self.devices.patterns,
            self.models,
            self.anomalies_only,
            None if self.allowed is None else self.allowed.patterns,
        )

    def match(self, item: StreamItem) -> bool:
        """Whether ``item`` goes to this client."""
        if self.anomalies_only and not item.anomaly:
            return False
        if self.models is not None and item.model not in self.models:
            return False
        hit = self._cache.get(item.device_id)
        if hit is None:
            hit = self.devices.match(item.device_id) and (
                self.allowed is None or self.allowed.match(item.device_id)
            )
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[item.device_id] = hit
        return hit

    def select(self, items: Iterable[StreamItem]) -> list[StreamItem]:
        """The items that pass, in order."""
        return [item for item in items if self.match(item)]
