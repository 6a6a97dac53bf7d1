"""``GET /v1/devices`` (latest prediction per device) and ``GET /v1/predictions`` (history
from the stream). Responses are built from the stored JSON bytes, not re-serialised."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import Response

from gateway.filters import DeviceMatcher, SubscriptionFilter
from gateway.history import latest_items, xrange
from gateway.items import StreamItem, id_key, parse_entry
from gateway.resources import GatewayResources, Resources
from gateway.routes.deps import Caller

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["data"])
_SCAN_LIMIT: Final = 20_000
"""Most stream entries one history request looks at (bounds the cost of a rare device)."""
_DEVICE_PATTERN: Final = r"^[A-Za-z0-9_.\-*?\[\]!]{1,64}$"
_STREAM_ID: Final = r"^\d{1,20}-\d{1,20}$"


def _json(items: list[StreamItem], last_id: str | None) -> Response:
    tail = b'],"last_id":' + (b'"' + last_id.encode() + b'"' if last_id else b"null") + b"}"
    body = b'{"items":[' + b",".join(i.raw for i in items) + tail
    return Response(body, media_type="application/json")


_LIST_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "predictions (iot_contract.Prediction JSON) and the stream id to page on",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "items": {"type": "array", "items": {"type": "object"}},
                        "last_id": {"type": ["string", "null"]},
                    },
                }
            }
        },
    },
    401: {"description": "missing or bad token"},
    422: {"description": "bad query parameter"},
}


@router.get("/devices", response_class=Response, responses=_LIST_DOC)
async def devices(res: Resources, caller: Caller) -> Response:
    """The newest prediction of every device the caller may see, by device id."""
    items = await latest_items(res.redis, res.keys)
    return _json([i for i in items if caller.may_see(i.device_id)], res.hub.position)


@router.get("/predictions", response_class=Response, responses=_LIST_DOC)
async def predictions(
    res: Resources,
    caller: Caller,
    device: Annotated[str, Query(pattern=_DEVICE_PATTERN, description="device id or glob")] = "*",
    since: Annotated[
        str | None, Query(pattern=_STREAM_ID, description="only entries after this stream id")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Stored predictions of ``device``: after ``since`` (oldest first, page with
    ``last_id``), or else the newest ``limit`` (oldest first)."""
    if since is not None:
        try:
            id_key(since)
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    flt = SubscriptionFilter(devices=DeviceMatcher([device]), allowed=caller.devices)
    return _json(*await _scan(res, flt, limit, since))


async def _scan(
    res: GatewayResources, flt: SubscriptionFilter, limit: int, since: str | None
) -> tuple[list[StreamItem], str | None]:
    """Up to ``limit`` matching items after ``since`` (oldest first), or the newest ``limit``
    when ``since`` is None; at most ``_SCAN_LIMIT`` entries are read. Returns the items and
    the stream id to resume after."""
    forward = since is not None
    bound = "+" if since is None else "(" + since
    out: list[StreamItem] = []
    scanned = 0
    last_id = since
    while len(out) < limit and scanned < _SCAN_LIMIT:
        if forward:
            entries = await xrange(res.redis, res.keys, bound, "+", 1000)
        else:
            entries = await xrange(res.redis, res.keys, "-", bound, 1000, reverse=True)
        for sid, fields in entries:
            item = parse_entry(sid, fields)
            if forward:
                last_id = sid.decode()
            if item is not None and flt.match(item):
                out.append(item)
                if len(out) == limit:
                    break
        scanned += len(entries)
        if len(entries) < 1000:
            break
        bound = "(" + entries[-1][0].decode()
    if not forward:
        out.reverse()
        last_id = out[-1].id if out else None
    return out, last_id
