"""The per-request service users start from, written the way the course teaches it.

A FastAPI ``POST /predict`` with a Pydantic body; ONNX Runtime scores the one reading of
each request; run under uvicorn (one process). Two forms, same code otherwise:

    uvicorn bench.rest_baseline_app:sync_app    # ``def predict``: FastAPI runs it in its
                                                # thread pool
    uvicorn bench.rest_baseline_app:async_app   # ``async def predict``: runs on the event
                                                # loop, inference included

The model is the one the streaming workers load: ``fault-clf`` from models/ (override with
``REST_BASELINE_MODEL_DIR``), in the variant the worker picks for this CPU, with the same
single intra-op thread. This is the baseline of ``iotstream bench rest``, not a service of
the project (that is the gateway's ``/v1/predict``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI
from pydantic import BaseModel, Field

from iot_models.manifest import read_manifest
from iot_models.variants import current_platform, select_variant

__all__ = ["PredictIn", "PredictOut", "async_app", "load_session", "sync_app"]

MODEL_DIR = Path(
    os.environ.get(
        "REST_BASELINE_MODEL_DIR",
        Path(__file__).resolve().parent.parent / "models" / "fault-clf" / "1",
    )
)


class PredictIn(BaseModel):
    """One reading: which device, and its feature vector."""

    device_id: str
    seq: int
    ts: float
    features: list[float] = Field(min_length=16, max_length=16)


class PredictOut(BaseModel):
    """The model's answer for that reading."""

    device_id: str
    seq: int
    label: str
    score: float
    anomaly: bool


def load_session(model_dir: Path = MODEL_DIR) -> tuple[ort.InferenceSession, list[str]]:
    """The worker's variant of the model in ``model_dir`` (one thread) and its labels."""
    manifest = read_manifest(model_dir / "manifest.json")
    variant = select_variant(manifest.variants.keys(), manifest.defaults, current_platform())
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(model_dir / manifest.variants[variant].file),
        options,
        providers=["CPUExecutionProvider"],
    )
    return session, list(manifest.output.labels or [])


session, labels = load_session()
input_name = session.get_inputs()[0].name


def _score(reading: PredictIn) -> PredictOut:
    x = np.asarray([reading.features], dtype=np.float32)
    probs = session.run(None, {input_name: x})[-1][0]
    best = int(np.argmax(probs))
    score = 1.0 - float(probs[0])
    return PredictOut(
        device_id=reading.device_id,
        seq=reading.seq,
        label=labels[best],
        score=score,
        anomaly=score > 0.5,
    )


sync_app = FastAPI(title="course-style predict (def)")
async_app = FastAPI(title="course-style predict (async def)")


@sync_app.post("/predict")
def predict_sync(reading: PredictIn) -> PredictOut:
    """Score one reading (``def``: FastAPI runs it in a worker thread)."""
    return _score(reading)


@async_app.post("/predict")
async def predict_async(reading: PredictIn) -> PredictOut:
    """Score one reading (``async def``: inference runs on the event loop)."""
    return _score(reading)
