"""Fixtures of the component tier: the worker's run loop on the in-memory bus."""

from __future__ import annotations

import numpy as np
import pytest

from inference_worker.app import build_core
from inference_worker.settings import WorkerSettings
from iot_models.core import InferenceCore
from iot_models.sensors import make_dataset
from tests.component.worker_support import MODELS


@pytest.fixture(scope="module")
def core() -> InferenceCore:
    """The bundled ``fault-clf`` model, loaded once per module."""
    settings = WorkerSettings(models_dir=MODELS, models=["fault-clf"], worker_id="w-mem")
    return build_core(settings)


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    """64 rows of the sensor model's features."""
    x, _ = make_dataset(64, seed=7)
    return x
