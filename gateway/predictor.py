"""REST inference on the workers' own core: same models, same :class:`InferenceCore`, so a
reading gives the same prediction through ``POST /v1/predict`` as through MQTT.

Inference runs in a worker thread (ONNX Runtime releases the GIL), never on the event loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio

from iot_contract import Reading
from iot_models.core import BatchResult, InferenceCore

__all__ = ["Predictor", "load_predictor", "read_manifests"]

log = logging.getLogger(__name__)


class Predictor:
    """The loaded models behind ``/v1/predict`` and ``/v1/models``."""

    def __init__(self, core: InferenceCore, manifests: list[dict[str, Any]]) -> None:
        self.core = core
        self.manifests = manifests
        self._limiter = anyio.CapacityLimiter(1)

    async def predict(self, readings: Sequence[Reading]) -> BatchResult:
        """Score ``readings`` off the event loop (one batch at a time)."""
        received = time.time()
        return await anyio.to_thread.run_sync(
            self.core.infer, readings, received, limiter=self._limiter
        )


def read_manifests(root: Path) -> list[dict[str, Any]]:
    """The newest manifest of every model under ``root``, as JSON-ready dicts."""
    from iot_models.manifest import find_manifests, read_manifest

    return [
        read_manifest(path).model_dump(mode="json")
        for _, path in sorted(find_manifests(root).items())
    ]


def load_predictor(root: Path, default_model: str, worker_id: str) -> Predictor | None:
    """Load every model under ``root``; ``None`` (logged) when there is none to load.

    Blocking: call it from a thread.
    """
    from iot_models.manifest import ModelError
    from iot_models.onnx_model import load_models

    try:
        models = load_models(root)
        manifests = read_manifests(root)
        core = InferenceCore(models, default_model=default_model, worker_id=worker_id)
    except (ModelError, ValueError) as exc:
        log.warning("REST predictions disabled: %s", exc)
        return None
    log.info("REST predictions on models %s (default %s)", sorted(models), default_model)
    return Predictor(core, manifests)
