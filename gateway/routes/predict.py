"""``POST /v1/predict`` and ``GET /v1/models``: inference on the workers' core."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, status
from pydantic import BaseModel, Field

from gateway.resources import Resources
from gateway.routes.deps import Caller
from iot_contract import Prediction, Reading

__all__ = ["PredictResponse", "Rejection", "router"]

router = APIRouter(prefix="/v1", tags=["inference"])


class Rejection(BaseModel):
    """A reading the models refused."""

    index: int
    """Position of the reading in the request (0 for a single reading)."""
    reason: str
    """Stable reason code (``unknown_model``, ``feature_count``, ...)."""
    detail: str


class PredictResponse(BaseModel):
    """Predictions for the accepted readings, in request order, and the refused ones."""

    predictions: list[Prediction]
    indices: list[int] = Field(description="request index of each prediction")
    rejected: list[Rejection]


@router.post(
    "/predict",
    response_model_exclude_none=True,
    responses={
        401: {"description": "missing or bad token"},
        413: {"description": "body too large"},
        422: {"description": "a reading breaks the contract (NaN/inf, wrong types, ...)"},
        429: {"description": "rate limited"},
        503: {"description": "no models loaded"},
    },
)
async def predict(
    res: Resources,
    caller: Caller,
    body: Annotated[Reading | list[Reading], Body(description="one reading or a list")],
) -> PredictResponse:
    """Score one reading or a batch with the same core the streaming workers use."""
    if res.predictor is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "no models are loaded")
    readings = body if isinstance(body, list) else [body]
    if not readings:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "no readings")
    if len(readings) > res.settings.max_batch_readings:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"at most {res.settings.max_batch_readings} readings per request",
        )
    result = await res.predictor.predict(readings)
    return PredictResponse(
        predictions=result.predictions,
        indices=result.indices,
        rejected=[
            Rejection(index=i, reason=e.reason.value, detail=e.detail) for i, e in result.rejected
        ],
    )


@router.get("/models")
async def models(res: Resources, caller: Caller) -> list[dict[str, Any]]:
    """Manifests of the models the REST path serves (name, version, inputs, variants...)."""
    return res.predictor.manifests if res.predictor is not None else []
