"""Helpers for the worker's component tests (tests/component/test_worker_*.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from inference_worker.memory_source import MemorySource
from inference_worker.service import Worker
from inference_worker.settings import WorkerSettings
from iot_contract import Reading, encode_reading, telemetry_topic

MODELS = Path(__file__).resolve().parents[2] / "models"


def settings_for(urls: dict[str, Any], **overrides: Any) -> WorkerSettings:
    """Worker settings on ``urls`` (the in-memory bus): 8-reading batches, 5 ms deadline."""
    fields: dict[str, Any] = {
        "worker_id": "w-mem",
        "models_dir": MODELS,
        "models": ["fault-clf"],
        "max_batch": 8,
        "max_wait_ms": 5.0,
        "shutdown_grace": 0.5,
    }
    return WorkerSettings(**(fields | urls | overrides))


def reading(rows: np.ndarray, seq: int, device: str = "pump-1") -> Reading:
    """Reading ``seq`` of ``device``, features from ``rows``."""
    row = rows[seq % len(rows)]
    return Reading(device_id=device, seq=seq, ts=1.7e9 + seq, features=[float(v) for v in row])


def publish(source: MemorySource, readings: list[Reading]) -> None:
    """Publish each reading to its telemetry topic."""
    for r in readings:
        source.publish(telemetry_topic(r.device_id), encode_reading(r))


def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait for ``condition``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the deadline")
        time.sleep(0.005)


def sample(worker: Worker, name: str, **labels: str) -> float:
    """A metric's value in the worker's registry (0 when never set)."""
    value = worker.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value
