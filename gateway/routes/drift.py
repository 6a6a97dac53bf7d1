"""``GET /v1/drift``: the workers' newest drift measurement per model and the last drift
events, read from Redis (:mod:`iot_contract.drift`) and validated through the contract.

A record that does not validate (a foreign writer, a newer schema, a damaged value) is left
out and logged, never a 500: the dashboard polls this route and must keep showing the models
whose records are sound.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Final, TypeVar

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import BaseModel, Field, ValidationError
from redis.exceptions import RedisError

from gateway.resources import Resources
from gateway.routes.deps import Caller
from iot_contract import RECORD_FIELD, DriftEvent, DriftStatus

__all__ = ["DriftView", "router"]

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1", tags=["drift"])
MAX_EVENTS: Final = 200
"""Most events one request may ask for."""
_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {"description": "missing or bad token"},
    422: {"description": "bad query parameter"},
    503: {"description": "Redis does not answer"},
}


class DriftView(BaseModel):
    """Drift of every model the workers report on, and the newest drift events."""

    models: list[DriftStatus] = Field(description="newest status per model, by model name")
    events: list[DriftEvent] = Field(description="the newest drift events, newest first")
    skipped: int = Field(
        ge=0, description="records in Redis left out because they do not validate (logged)"
    )


_M = TypeVar("_M", bound=BaseModel)


def _parse(cls: type[_M], raw: Any, where: str, problems: list[str]) -> _M | None:
    try:
        return cls.model_validate_json(raw)
    except (ValidationError, ValueError, TypeError) as exc:
        problems.append(f"{where}: {str(exc).splitlines()[0][:160]}")
        return None


@router.get("/drift", responses=_ERRORS)
async def drift(
    res: Resources,
    caller: Caller,
    events: Annotated[
        int, Query(ge=0, le=MAX_EVENTS, description="how many of the newest events")
    ] = 20,
) -> DriftView:
    """The newest :class:`~iot_contract.DriftStatus` per model (``{prefix}:drift``) and the
    last ``events`` :class:`~iot_contract.DriftEvent` records (``{prefix}:drift:events``)."""
    try:
        statuses: Any = await res.redis.hgetall(res.keys.drift)
        entries: Any = (
            await res.redis.xrevrange(res.keys.drift_events, count=events) if events else []
        )
    except RedisError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "redis does not answer") from exc
    problems: list[str] = []
    models = []
    for name in sorted(statuses):
        parsed = _parse(DriftStatus, statuses[name], f"drift status {name!r}", problems)
        if parsed is not None:
            models.append(parsed)
    recent = []
    for sid, fields in entries or []:
        raw = fields.get(RECORD_FIELD)
        parsed_event = _parse(DriftEvent, raw or b"", f"drift event {sid!r}", problems)
        if parsed_event is not None:
            recent.append(parsed_event)
    if problems:
        log.warning(
            "skipped %d drift record(s) that do not validate; first: %s", len(problems), problems[0]
        )
    return DriftView(models=models, events=recent, skipped=len(problems))
