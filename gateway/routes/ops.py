"""Operations: ``/healthz`` (liveness, no dependencies), ``/readyz`` (Redis reachable, stream
reader running, models loaded), ``/metrics`` (Prometheus)."""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from gateway.resources import Resources

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers. Checks nothing else (never restart on a Redis blip)."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "not ready; the body says why"}})
async def readyz(res: Resources) -> JSONResponse:
    """Readiness: Redis answers, the stream reader runs, and the REST models are loaded."""
    checks: dict[str, Any] = {}
    try:
        with anyio.fail_after(1.0):
            checks["redis"] = bool(await res.redis.ping())
    except (RedisError, OSError, TimeoutError):
        checks["redis"] = False
    checks["reader"] = res.reader.healthy
    checks["models"] = res.predictor is not None
    ready = all(checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics(res: Resources) -> Response:
    """Prometheus text exposition of the gateway's metrics."""
    return Response(generate_latest(res.metrics.registry), media_type=CONTENT_TYPE_LATEST)
