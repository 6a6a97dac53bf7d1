"""Redis key names and stream-record layout, all under one configurable prefix."""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple, overload

from iot_contract.errors import ContractError, RejectReason

__all__ = [
    "RECORD_FIELD",
    "SEEN_BLOCK_BITS",
    "RedisKeys",
    "SeenSlot",
    "parse_stream_id",
    "ts_fingerprint",
]

RECORD_FIELD: Final = b"m"
"""The single field of each stream entry: the message as JSON bytes."""

SEEN_BLOCK_BITS: Final = 8192
"""Readings per deduplication block: one bit per ``seq`` (1 KiB per block) for readings
with a ``boot``, one 32-bit ``ts`` fingerprint per ``seq`` (32 KiB) for readings without."""
BOOTLESS_KEY_PART: Final = "ts"
"""Stands in for the boot id in the keys of boot-less readings (a boot id is a number)."""

_PREFIX_RE: Final = re.compile(r"\A[A-Za-z0-9_.:-]{1,64}\Z")
_STREAM_ID_RE: Final = re.compile(r"\A(\d{1,20})-(\d{1,20})\Z")


class _Key:
    """A key name under the prefix of the :class:`RedisKeys` it is read from:
    ``<prefix>:<suffix>`` (read on the class: the descriptor itself)."""

    __slots__ = ("suffix",)

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    @overload
    def __get__(self, keys: None, owner: type[RedisKeys]) -> _Key: ...

    @overload
    def __get__(self, keys: RedisKeys, owner: type[RedisKeys]) -> str: ...

    def __get__(self, keys: RedisKeys | None, owner: type[RedisKeys]) -> str | _Key:
        return self if keys is None else f"{keys.prefix}:{self.suffix}"


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Key names for one deployment; ``prefix`` separates deployments sharing a Redis.

    Attributes:
        prefix: e.g. ``iotstream`` gives ``iotstream:predictions``.
    """

    prefix: str = "iotstream"

    predictions = _Key("predictions")
    """Stream of :class:`~iot_contract.Prediction` records (fan-out and resume history)."""
    deadletter = _Key("deadletter")
    """Stream of :class:`~iot_contract.DeadLetter` records."""
    latest = _Key("latest")
    """Hash ``device_id -> newest prediction JSON``."""
    epoch = _Key("epoch")
    """String that changes whenever the predictions stream is reset (offsets become void)."""
    ingest = _Key("ingest")
    """Staging stream of received readings (``iotstream ingest`` appends, workers read
    it through a consumer group); entry layout in :mod:`iot_contract.staging`."""
    drift = _Key("drift")
    """Hash ``model name -> newest`` :class:`~iot_contract.DriftStatus` JSON."""
    drift_events = _Key("drift:events")
    """Stream of :class:`~iot_contract.DriftEvent` records (a model starts or stops
    drifting), one :data:`RECORD_FIELD` per entry."""

    def __post_init__(self) -> None:
        if not _PREFIX_RE.match(self.prefix):
            raise ContractError(
                RejectReason.INVALID, f"redis prefix {self.prefix!r} must match [A-Za-z0-9_.:-]+"
            )

    def seen_slot_of(self, record: Mapping[str, Any]) -> SeenSlot:
        """:meth:`seen_slot` of a prediction record (:func:`iot_contract.prediction_record`)."""
        return self.seen_slot(
            record["device_id"], record["seq"], record.get("boot"), record["hops"]["device_ts"]
        )

    def seen_slot(
        self, device_id: str, seq: int, boot: int | None = None, ts: float = 0.0
    ) -> SeenSlot:
        """Where the deduplication of reading ``(device_id, boot, seq)`` is recorded.

        With a ``boot``: bit ``seq % SEEN_BLOCK_BITS`` of bitmap
        ``{prefix}:seen:{device_id}:{boot}:{seq // SEEN_BLOCK_BITS}``; a SETBIT that returns
        0 means the reading is new, so deduplication is exact whatever the order readings
        arrive in, at one bit per reading, and a new boot starts on fresh bitmaps.

        Without one: unsigned 32-bit slot ``seq % SEEN_BLOCK_BITS`` (``BITFIELD ... #n``) of
        ``{prefix}:seen:{device_id}:ts:{block}`` holds :func:`ts_fingerprint` of the last
        reading stored with that ``seq``; the reading is new unless the slot already holds
        its fingerprint (a redelivery carries the same ``ts``, a restarted device a new one).
        """
        block, offset = divmod(seq, SEEN_BLOCK_BITS)
        if boot is not None:
            return SeenSlot(f"{self.prefix}:seen:{device_id}:{boot}:{block}", offset, None)
        key = f"{self.prefix}:seen:{device_id}:{BOOTLESS_KEY_PART}:{block}"
        return SeenSlot(key, offset, ts_fingerprint(ts))


class SeenSlot(NamedTuple):
    """One reading's place in the deduplication keys (see :meth:`RedisKeys.seen_slot`).

    Attributes:
        key: the bitmap (or fingerprint array) key.
        offset: bit index, or 32-bit slot index when ``fingerprint`` is set.
        fingerprint: ``None`` for a reading with a boot id (one bit); else the value the
            slot must hold for the reading to count as seen.
    """

    key: str
    offset: int
    fingerprint: int | None


_DOUBLE: Final = struct.Struct("<d")


def ts_fingerprint(ts: float) -> int:
    """A 32-bit fingerprint of a reading's ``ts``, never 0 (0 marks an empty slot).

    CRC-32 of the float64 bytes: the same in every process (unlike ``hash``), and two
    different times collide with probability 2**-32.
    """
    return zlib.crc32(_DOUBLE.pack(float(ts))) or 1


def parse_stream_id(value: str) -> tuple[int, int]:
    """Parse a Redis stream id ``<ms>-<seq>``.

    Raises:
        ContractError: ``value`` is not a full stream id.
    """
    match = _STREAM_ID_RE.match(value)
    if not match:
        raise ContractError(RejectReason.INVALID, f"{value[:64]!r} is not a stream id <ms>-<seq>")
    return int(match.group(1)), int(match.group(2))
