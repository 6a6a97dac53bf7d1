"""Reading the predictions stream's history: resume plans, the latest value per device, and
paged history for REST.

A resume from stream id ``S`` is exact when nothing after ``S`` was removed. Workers trim
with ``MAXLEN ~``, which removes from the head, and ``XDEL`` is recorded in Redis 7's
``max-deleted-entry-id``; so nothing after ``S`` is missing when the stream never lost an
entry (``entries-added == length``), or when ``S`` is still kept (``S >= first entry``) and no
entry after ``S`` was deleted. Otherwise the answer is ``recovered: false`` (erring on the
safe side when exactly the entries up to ``S`` were trimmed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gateway.items import StreamItem, StreamKey, id_key, parse_entry
from iot_contract import RedisKeys

__all__ = [
    "Entry",
    "ResumePlan",
    "StreamBounds",
    "latest_items",
    "plan_resume",
    "read_range",
    "stream_bounds",
    "xrange",
]

_PAGE: Final = 1000
_ZERO: Final = "0-0"


@dataclass(frozen=True, slots=True)
class StreamBounds:
    """What the stream keeps: ids of its first kept entry, the newest id ever generated, the
    newest id ever removed by XDEL (``None`` before Redis 7), and whether any entry was ever
    removed (trimmed or deleted)."""

    first: StreamKey | None
    last_generated: StreamKey
    max_deleted: StreamKey | None
    lost_any: bool = True


@dataclass(slots=True)
class ResumePlan:
    """How a subscription starts.

    Attributes:
        recovered: ``False`` when the client's offset is void (trimmed, reset or too old).
        items: replayed entries (stream order), when ``recovered``.
        replayed_to: the key every delivered item must come after.
    """

    recovered: bool
    items: list[StreamItem] = field(default_factory=list)
    replayed_to: StreamKey = (0, 0)


Entry = tuple[bytes, dict[bytes, bytes]]
"""A raw stream entry: ``(id, fields)``."""


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def xrange(
    redis: Redis, keys: RedisKeys, lower: str, upper: str, count: int, *, reverse: bool = False
) -> list[Entry]:
    """XRANGE (or XREVRANGE) on the predictions stream, typed."""
    if reverse:
        result: Any = await redis.xrevrange(keys.predictions, max=upper, min=lower, count=count)
    else:
        result = await redis.xrange(keys.predictions, min=lower, max=upper, count=count)
    return list(result or [])


async def stream_bounds(redis: Redis, keys: RedisKeys) -> StreamBounds:
    """The stream's bounds (an absent stream is empty with nothing generated)."""
    try:
        info = await redis.xinfo_stream(keys.predictions)
    except ResponseError:
        return StreamBounds(None, (0, 0), None, lost_any=False)
    first = info.get("first-entry")
    max_deleted = info.get("max-deleted-entry-id")
    added = info.get("entries-added")
    return StreamBounds(
        first=id_key(_s(first[0])) if first else None,
        last_generated=id_key(_s(info["last-generated-id"])),
        max_deleted=id_key(_s(max_deleted)) if max_deleted is not None else None,
        lost_any=added is None or int(added) > int(info["length"]),
    )


def _parse(entries: list[Entry]) -> tuple[list[StreamItem], int]:
    items: list[StreamItem] = []
    bad = 0
    for sid, fields in entries:
        item = parse_entry(sid, fields)
        if item is None:
            bad += 1
        else:
            items.append(item)
    return items, bad


async def read_range(
    redis: Redis, keys: RedisKeys, after: str, until: str, limit: int
) -> list[StreamItem] | None:
    """Entries with ``after < id <= until``, oldest first; ``None`` if more than ``limit``."""
    out: list[StreamItem] = []
    lower = "(" + after
    while True:
        entries = await xrange(redis, keys, lower, until, _PAGE)
        items, _ = _parse(entries)
        out.extend(items)
        if len(out) > limit:
            return None
        if len(entries) < _PAGE:
            return out
        lower = "(" + _s(entries[-1][0])


async def last_items(redis: Redis, keys: RedisKeys, n: int, until: str) -> list[StreamItem]:
    """The last ``n`` entries up to ``until``, oldest first."""
    if n <= 0:
        return []
    entries = await xrange(redis, keys, "-", until, n, reverse=True)
    items, _ = _parse(entries[::-1])
    return items


async def latest_items(redis: Redis, keys: RedisKeys) -> list[StreamItem]:
    """The newest prediction of every device (from the latest-value hash), by device id."""
    values: Any = await redis.hgetall(keys.latest)
    items: list[StreamItem] = []
    for device in sorted(values):
        item = parse_entry(_ZERO, {b"m": values[device]})
        if item is not None:
            items.append(item)
    return items


async def plan_resume(
    redis: Redis,
    keys: RedisKeys,
    *,
    since: str | None,
    client_epoch: str | None,
    epoch: str,
    position: str,
    max_replay: int,
) -> ResumePlan:
    """Decide how a subscription with ``since`` starts, given the reader is at ``position``.

    Args:
        since: ``None``/``$`` live only, ``-N`` the last N entries, or a stream id.
        client_epoch: the epoch the client's ``since`` belongs to, if it said.
        epoch: the stream's current epoch.
        position: the hub's stream position; live items after it reach the client anyway.
        max_replay: a larger gap is answered with ``recovered: false``.
    """
    here = id_key(position)
    if since is None or since == "$":
        return ResumePlan(recovered=True, replayed_to=here)
    if since.startswith("-"):
        items = await last_items(redis, keys, min(int(since[1:]), max_replay), position)
        return ResumePlan(recovered=True, items=items, replayed_to=here)
    if client_epoch is not None and client_epoch != epoch:
        return ResumePlan(recovered=False, replayed_to=here)
    start = id_key(since)
    bounds = await stream_bounds(redis, keys)
    if start > bounds.last_generated:
        return ResumePlan(recovered=False, replayed_to=here)  # an id from a reset stream
    trimmed = bounds.lost_any and (
        (bounds.first is None and bounds.last_generated > start)
        or (bounds.first is not None and start < bounds.first)
        or bounds.max_deleted is None
        or bounds.max_deleted > start
    )
    if trimmed:
        return ResumePlan(recovered=False, replayed_to=here)
    if start >= here:
        return ResumePlan(recovered=True, replayed_to=start)
    replay = await read_range(redis, keys, since, position, max_replay)
    if replay is None:
        return ResumePlan(recovered=False, replayed_to=here)
    return ResumePlan(recovered=True, items=replay, replayed_to=here)
