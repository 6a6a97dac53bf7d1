"""``create_app(settings)``: the gateway's FastAPI application.

Resources (Redis, the stream reader, the hub, models) are built in the lifespan and handed
to routes as typed lifespan state; one router per concern.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from gateway.limits import RestLimitsMiddleware, TokenBuckets
from gateway.metrics import GatewayMetrics
from gateway.oip.errors import OipError
from gateway.oip.metrics import OipMetrics
from gateway.oip.runtime import open_oip
from gateway.resources import STATE_KEY, open_resources
from gateway.routes import dashboard, data, drift, ops, predict, v2, ws
from gateway.settings import GatewaySettings

__all__ = ["create_app"]

DESCRIPTION = """\
Live IoT predictions: a WebSocket at `/ws` (protocol: docs/websocket.md) fed from the
Redis predictions stream, REST inference on the workers' own core (`/v1/predict`, and the
Open Inference Protocol / KServe V2 at `/v2`), the dashboard at `/`.
Authenticate with a JWT bearer token (`Authorization: Bearer ...` on REST).
"""


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    # The default handler echoes the input, which fails to render for NaN/inf and may be
    # huge or hostile; report where and why only.
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {
            "loc": list(e.get("loc", ())),
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors[:20]
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def create_app(settings: GatewaySettings) -> FastAPI:
    """Build the gateway application for ``settings``."""
    metrics = GatewayMetrics()
    oip_metrics = OipMetrics(metrics.registry)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with (
            open_resources(settings, metrics) as resources,
            open_oip(resources, metrics, oip_metrics) as oip,
        ):
            yield {STATE_KEY: resources, v2.OIP_STATE_KEY: oip}

    app = FastAPI(
        title="iotstream gateway",
        version="1",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(OipError, v2.oip_error_response)
    app.add_middleware(
        RestLimitsMiddleware,
        buckets=TokenBuckets(settings.rest_rate_per_s, settings.rest_burst),
        max_body=settings.max_body_bytes,
        metrics=metrics,
    )
    for module in (ws, predict, v2, data, drift, ops, dashboard):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC_DIR), name="static")
    return app
