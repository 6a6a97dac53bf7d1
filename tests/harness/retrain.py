"""Fixtures' helpers for the retraining tests: captured readings written by the real capture
writer, and a folder model store serving the bundled ``fault-clf`` as production."""

from __future__ import annotations

import time
from pathlib import Path

from inference_worker.app import build_core
from inference_worker.settings import WorkerSettings
from iot_contract import Reading
from iot_models.capture.writer import CaptureConfig, CaptureWriter
from iot_models.manifest import Manifest
from iot_models.sensors import LABELS, make_dataset
from iot_models.store import open_store
from iot_models.store.alias import set_version
from iot_models.store.objects import FileObjectStore

MODELS = Path(__file__).resolve().parents[2] / "models"
MODEL = "fault-clf"
RECEIVED_AT = 1_764_460_800.0
"""2025-11-30 00:00 UTC: when the captured readings were received."""


def capture_readings(capture: Path, rows: int, *, labelled_every: int = 2, seed: int = 9) -> int:
    """Score ``rows`` generated readings with the bundled model and capture them all into the
    folder ``capture`` (received at :data:`RECEIVED_AT`, a fixed time: the files, hence the
    dataset id that seeds the pipeline's splits, are the same in every run, so the gate's
    verdict is too); every ``labelled_every``-th carries its true label. Returns the number
    of labelled rows."""
    core = build_core(WorkerSettings(models_dir=MODELS, models=[MODEL], worker_id="w-retrain"))
    x, y = make_dataset(rows, seed)
    readings = [
        Reading(
            device_id=f"pump-{i % 16:04d}",
            seq=i,
            ts=RECEIVED_AT - 0.005 + i * 0.01,
            features=[float(v) for v in x[i]],
            label=LABELS[int(y[i])] if i % labelled_every == 0 else None,
        )
        for i in range(rows)
    ]
    t0 = RECEIVED_AT
    config = CaptureConfig(flush_rows=max(1, rows // 2), retention_hours=None)
    with CaptureWriter(FileObjectStore(capture), config, worker_id="w-retrain") as writer:
        for start in range(0, rows, 64):
            batch = readings[start : start + 64]
            received = [t0 + (start + k) * 0.01 for k in range(len(batch))]
            writer.observe(batch, received, core.infer(batch, received))
        if not writer.flush():
            raise AssertionError("the capture writer did not flush within its timeout")
    return len(range(0, rows, labelled_every))


def store_with_production(store_dir: Path) -> Manifest:
    """A folder store with the bundled ``fault-clf`` published and ``production`` on it."""
    store = open_store(store_dir)
    store.ensure()
    manifest = store.publish(MODELS / MODEL / "1")
    store.write_alias(set_version(None, MODEL, "production", "1", at=time.time(), by="t"), None)
    store.close()
    return manifest
