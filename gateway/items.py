"""Stream items and the frames built from them.

Each prediction's JSON is taken from Redis as bytes and never re-serialised: the reader
reads the few fields the filters need once per process, and frames are built by joining
the raw bytes, so a frame to 1,000 clients costs 1,000 byte joins, not 1,000 JSON encodes.
The encodings themselves belong to the contract (:mod:`iot_contract.fast`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from iot_contract import (
    RECORD_FIELD,
    encode_heartbeat_frame,
    encode_predictions_frame,
    read_prediction_head,
)

__all__ = [
    "StreamItem",
    "encode_heartbeat",
    "encode_predictions",
    "id_key",
    "parse_entry",
]

StreamKey = tuple[int, int]


@dataclass(frozen=True, slots=True)
class StreamItem:
    """One prediction as read from the stream.

    Attributes:
        id: the stream id (``<ms>-<seq>``), the resume offset.
        key: ``id`` as a tuple, for ordering.
        device_id: the prediction's device.
        model: the prediction's model name.
        anomaly: the prediction's anomaly flag.
        raw: the prediction's JSON, exactly as the worker wrote it.
    """

    id: str
    key: StreamKey
    device_id: str
    model: str
    anomaly: bool
    raw: bytes


_U64: Final = 2**64 - 1


def id_key(stream_id: str | bytes) -> StreamKey:
    """``"<ms>-<seq>"`` as ``(ms, seq)``; a bare ``<ms>`` means ``(ms, 0)``.

    Raises:
        ValueError: not a stream id, or a part beyond Redis's 64-bit range.
    """
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    key = int(ms), int(seq or 0)
    if key[0] > _U64 or key[1] > _U64 or key[0] < 0 or key[1] < 0:
        raise ValueError(f"stream id {text[:48]!r} is out of range")
    return key


def parse_entry(stream_id: bytes | str, fields: Mapping[bytes, bytes]) -> StreamItem | None:
    """Build a :class:`StreamItem` from one XREAD/XRANGE entry; ``None`` if it is not a
    prediction record (such entries are skipped and counted by the caller)."""
    raw = fields.get(RECORD_FIELD)
    if raw is None:
        return None
    head = read_prediction_head(raw)
    if head is None:
        return None
    sid = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    return StreamItem(sid, id_key(sid), *head, raw)


def encode_predictions(
    items: Sequence[StreamItem] | Sequence[bytes],
    last_id: str | None,
    *,
    snapshot: bool = False,
    sent_ts: float | None = None,
) -> str:
    """A ``predictions`` frame (see :class:`iot_contract.PredictionsFrame`) as text;
    ``sent_ts`` defaults to now."""
    raws = [i if isinstance(i, bytes) else i.raw for i in items]
    return encode_predictions_frame(raws, last_id, snapshot=snapshot, sent_ts=sent_ts)


def encode_heartbeat(last_id: str | None, now: float | None = None) -> str:
    """A ``heartbeat`` frame as text."""
    return encode_heartbeat_frame(last_id, now)
