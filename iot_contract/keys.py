"""Redis key names and stream-record layout, all under one configurable prefix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from iot_contract.errors import ContractError, RejectReason

__all__ = ["RECORD_FIELD", "SEEN_BLOCK_BITS", "RedisKeys", "parse_stream_id"]

RECORD_FIELD: Final = b"m"
"""The single field of each stream entry: the message as JSON bytes."""

SEEN_BLOCK_BITS: Final = 8192
"""Readings per deduplication bitmap block (one bit per ``seq``, 1 KiB per block)."""

_PREFIX_RE: Final = re.compile(r"\A[A-Za-z0-9_.:-]{1,64}\Z")
_STREAM_ID_RE: Final = re.compile(r"\A(\d{1,20})-(\d{1,20})\Z")


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Key names for one deployment; ``prefix`` separates deployments sharing a Redis.

    Attributes:
        prefix: e.g. ``iotstream`` gives ``iotstream:predictions``.
    """

    prefix: str = "iotstream"

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise ContractError(
                RejectReason.INVALID, f"redis prefix {self.prefix!r} must match [A-Za-z0-9_.:-]+"
            )

    @property
    def predictions(self) -> str:
        """Stream of :class:`~iot_contract.Prediction` records (fan-out and resume history)."""
        return f"{self.prefix}:predictions"

    @property
    def deadletter(self) -> str:
        """Stream of :class:`~iot_contract.DeadLetter` records."""
        return f"{self.prefix}:deadletter"

    @property
    def latest(self) -> str:
        """Hash ``device_id -> newest prediction JSON``."""
        return f"{self.prefix}:latest"

    @property
    def epoch(self) -> str:
        """String that changes whenever the predictions stream is reset (offsets become void)."""
        return f"{self.prefix}:epoch"

    def seen(self, device_id: str, seq: int) -> tuple[str, int]:
        """Bitmap key and bit offset recording that ``(device_id, seq)`` was stored.

        Bit ``seq % SEEN_BLOCK_BITS`` of block ``seq // SEEN_BLOCK_BITS``: a SETBIT that
        returns 0 means the reading is new, so deduplication is exact whatever the order
        readings arrive in, at one bit per reading.
        """
        block, bit = divmod(seq, SEEN_BLOCK_BITS)
        return f"{self.prefix}:seen:{device_id}:{block}", bit


def parse_stream_id(value: str) -> tuple[int, int]:
    """Parse a Redis stream id ``<ms>-<seq>``.

    Raises:
        ContractError: ``value`` is not a full stream id.
    """
    match = _STREAM_ID_RE.match(value)
    if not match:
        raise ContractError(RejectReason.INVALID, f"{value[:64]!r} is not a stream id <ms>-<seq>")
    return int(match.group(1)), int(match.group(2))
