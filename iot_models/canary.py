"""Which devices a canary version scores: a pure function of the device id.

A device is on the canary when its id matches one of the canary's globs, or when its
bucket, ``blake2b(model + "/" + device_id) mod 10000``, is below ``percent * 100``. The
hash is the same in every process, on every machine and Python version (unlike
``hash()``), so every worker and the gateway send a device to the same version, and the
device stays there from reading to reading. Raising the percentage only adds devices
(bucket < 500 includes bucket < 100), and the model name in the hash gives each model's
canary its own devices instead of the same unlucky ones every time.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass, field

__all__ = ["BUCKETS", "CanaryRule", "canary_bucket"]

BUCKETS = 10_000
"""Percent resolution: 0.01 %."""


def canary_bucket(model: str, device_id: str) -> int:
    """The device's bucket in ``[0, BUCKETS)`` for ``model``'s canaries."""
    digest = hashlib.blake2b(f"{model}/{device_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


@dataclass(frozen=True)
class CanaryRule:
    """Where one model's canary applies.

    Args:
        model: the model name (part of the hash).
        percent: share of devices, 0-100 in steps of 0.01.
        devices: globs of device ids always on the canary.
    """

    model: str
    percent: float
    devices: tuple[str, ...] = ()
    _threshold: int = field(init=False, repr=False, compare=False)
    _globs: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.percent <= 100.0:
            raise ValueError(f"canary percent {self.percent} is outside 0-100")
        object.__setattr__(self, "_threshold", round(self.percent * BUCKETS / 100))
        pattern = "|".join(f"(?:{fnmatch.translate(g)})" for g in self.devices)
        object.__setattr__(self, "_globs", re.compile(pattern) if pattern else None)

    def applies(self, device_id: str) -> bool:
        """Whether ``device_id``'s readings go to the canary."""
        if self._globs is not None and self._globs.match(device_id):
            return True
        return canary_bucket(self.model, device_id) < self._threshold
