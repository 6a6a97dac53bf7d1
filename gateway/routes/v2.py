"""The Open Inference Protocol (KServe V2) over REST: ``/v2/...`` on the gateway's own
inference core, through the dynamic batcher (:mod:`gateway.oip`).

Health (``/v2/health/*``) is open like ``/healthz``; metadata and inference need the same
bearer token as ``/v1``. Errors are the protocol's ``{"error": "..."}`` with 400 (bad
input), 404 (unknown model or version), 429 (batcher queue full), 503 (no models).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import HTTPConnection

from gateway.oip.errors import OipError
from gateway.oip.rest import (
    HEADER_LENGTH,
    InferRequest,
    encode_response,
    inline_schema,
    parse_request,
)
from gateway.oip.service import OipService
from gateway.oip.tensors import ModelSpec
from gateway.routes.deps import Caller

__all__ = ["OIP_STATE_KEY", "Oip", "oip_error_response", "router"]

OIP_STATE_KEY: Final = "oip"
router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"])

_ERROR = {"content": {"application/json": {"schema": {"type": "object"}}}}
_ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    400: {"description": "bad input: the reason is in `error`", **_ERROR},
    401: {"description": "missing or bad token"},
    404: {"description": "unknown model or version", **_ERROR},
    413: {"description": "body too large"},
    429: {"description": "the dynamic batcher's queue is full", **_ERROR},
    503: {"description": "no models are loaded", **_ERROR},
}


def get_oip(conn: HTTPConnection) -> OipService:
    """The protocol's data plane from the lifespan state."""
    service: OipService = getattr(conn.state, OIP_STATE_KEY)
    return service


Oip = Annotated[OipService, Depends(get_oip)]


def oip_error_response(_: Request, exc: Exception) -> JSONResponse:
    """The protocol's error body for an :class:`OipError` (registered by ``create_app``)."""
    assert isinstance(exc, OipError)
    return JSONResponse({"error": exc.message}, status_code=exc.http_status)


@router.get("/health/live")
async def live() -> dict[str, bool]:
    """The server answers."""
    return {"live": True}


@router.get("/health/ready", responses={503: {"description": "not ready"}})
async def ready(oip: Oip) -> JSONResponse:
    """Models are loaded and the server takes inference requests."""
    ok = oip.ready
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


@router.get("")
async def server_metadata(oip: Oip, caller: Caller) -> dict[str, Any]:
    """Server name, version and protocol extensions."""
    return oip.server_metadata()


def _metadata(spec: ModelSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "versions": [spec.version],
        "platform": spec.platform,
        "inputs": [{"name": t.name, "datatype": t.datatype, "shape": t.shape} for t in spec.inputs],
        "outputs": [
            {"name": t.name, "datatype": t.datatype, "shape": t.shape} for t in spec.outputs
        ],
    }


@router.get("/models/{name}", responses=_ERRORS)
async def model_metadata(oip: Oip, caller: Caller, name: str) -> dict[str, Any]:
    """A model's versions, platform, input and output tensors."""
    return _metadata(oip.spec(name))


@router.get("/models/{name}/versions/{version}", responses=_ERRORS)
async def model_version_metadata(
    oip: Oip, caller: Caller, name: str, version: str
) -> dict[str, Any]:
    """Metadata of one version (the served one; any other is 404)."""
    return _metadata(oip.spec(name, version))


@router.get("/models/{name}/ready", responses=_ERRORS)
async def model_ready(oip: Oip, caller: Caller, name: str) -> dict[str, Any]:
    """200 when the model is served, 404 when it is not."""
    spec = oip.spec(name)
    return {"name": spec.name, "ready": True}


@router.get("/models/{name}/versions/{version}/ready", responses=_ERRORS)
async def model_version_ready(oip: Oip, caller: Caller, name: str, version: str) -> dict[str, Any]:
    """200 when that version is served, 404 when it is not."""
    spec = oip.spec(name, version)
    return {"name": spec.name, "ready": True}


_INFER_BODY: Final = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": inline_schema(InferRequest)}},
    }
}


async def _infer(request: Request, oip: OipService, name: str, version: str | None) -> Response:
    parsed = parse_request(await request.body(), request.headers.get(HEADER_LENGTH))
    outcome = await oip.infer(
        name,
        version,
        parsed.inputs,
        requested=parsed.requested,
        parameters=parsed.parameters,
        protocol="rest",
    )
    body, header_length = encode_response(
        parsed, outcome.spec.name, outcome.spec.version, outcome.outputs
    )
    if header_length is None:
        return Response(body, media_type="application/json")
    return Response(
        body,
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(header_length)},
    )


@router.post("/models/{name}/infer", responses=_ERRORS, openapi_extra=_INFER_BODY)
async def infer(request: Request, oip: Oip, caller: Caller, name: str) -> Response:
    """Inference: input ``features`` ``FP32 [n, F]``, one row per reading; JSON tensors or
    the binary-data extension."""
    return await _infer(request, oip, name, None)


@router.post(
    "/models/{name}/versions/{version}/infer", responses=_ERRORS, openapi_extra=_INFER_BODY
)
async def infer_version(
    request: Request, oip: Oip, caller: Caller, name: str, version: str
) -> Response:
    """Inference on one version (the served one; any other is 404)."""
    return await _infer(request, oip, name, version)
