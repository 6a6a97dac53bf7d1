"""Capture on a real S3 server (moto's, as a process on loopback) and in a real worker:
the object store contract on S3, the writer and dataset versions on S3, and a worker with
capture on (real Mosquitto, Redis and the ``fault-clf`` ONNX model) whose capture files
hold exactly the readings it scored, with the scores it stored in Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import redis
from prometheus_client import generate_latest

from inference_worker.app import build_core, running_worker
from inference_worker.settings import WorkerSettings
from iot_contract import Reading, RedisKeys
from iot_models.capture.datasets import create_dataset, load_dataset, materialize
from iot_models.capture.reader import list_partitions, partition_infos, read_table
from iot_models.capture.writer import CaptureConfig, CaptureWriter
from iot_models.sensors import LABELS, make_dataset
from iot_models.store import open_store
from iot_models.store.errors import StoreError
from iot_models.store.objects import ObjectNotFoundError, ObjectStore, open_objects
from tests.harness.metrics import CATALOGUES, unexposed
from tests.harness.pipeline import (
    bundled_worker_settings,
    predictions,
    publish,
    reading_messages,
    wait_for,
)
from tests.harness.s3 import s3_store_url
from tests.harness.services import Service

pytestmark = pytest.mark.integration

MODELS = Path(__file__).resolve().parents[2] / "models"


def s3_url(endpoint: str) -> str:
    """A capture store in a fresh bucket (created, as an operator would)."""
    url = s3_store_url(endpoint, prefix="capture")
    store = open_store(url)
    store.ensure()
    store.close()
    return url


@pytest.fixture
def s3_objects(s3_endpoint: str) -> Iterator[ObjectStore]:
    objects = open_objects(s3_url(s3_endpoint))
    yield objects
    objects.close()


def fleet(n: int, prefix: str = "pump") -> list[Reading]:
    x, y = make_dataset(n, 21)
    now = time.time()
    return [
        Reading(
            device_id=f"{prefix}-{i % 10}",
            boot=3,
            seq=i,
            ts=now,
            features=[float(v) for v in x[i]],
            label=LABELS[int(y[i])] if i % 3 else None,
        )
        for i in range(n)
    ]


def test_s3_object_store_contract(s3_objects: ObjectStore, s3_endpoint: str) -> None:
    assert s3_objects.list() == [] and s3_objects.sizes() == {}
    s3_objects.put("a/b/c.bin", b"123")
    s3_objects.put("a/b/c.bin", b"1234")
    s3_objects.put("a/d.bin", b"")
    assert s3_objects.get("a/b/c.bin") == b"1234"
    assert s3_objects.list() == ["a/b/c.bin", "a/d.bin"]
    assert s3_objects.list("a/b/") == ["a/b/c.bin"]
    assert s3_objects.sizes("a/") == {"a/b/c.bin": 4, "a/d.bin": 0}
    with pytest.raises(ObjectNotFoundError):
        s3_objects.get("a/nope")
    s3_objects.delete("a/b/c.bin")
    s3_objects.delete("a/b/c.bin")
    assert s3_objects.list() == ["a/d.bin"]
    # a bucket that does not exist lists as empty; a write to it says what went wrong
    missing = open_objects(s3_store_url(s3_endpoint, prefix="capture"))
    assert missing.list() == [] and missing.sizes() == {}
    with pytest.raises(StoreError):
        missing.put("x", b"1")
    missing.close()


def test_writer_and_dataset_versions_on_s3(s3_objects: ObjectStore) -> None:
    core = build_core(WorkerSettings(models_dir=MODELS, models=["fault-clf"], worker_id="w"))
    readings = fleet(200)
    with CaptureWriter(s3_objects, CaptureConfig(flush_rows=64), worker_id="w-s3") as writer:
        for start in range(0, 200, 50):
            batch = readings[start : start + 50]
            received = [time.time()] * len(batch)
            writer.observe(batch, received, core.infer(batch, received))
    assert len(list_partitions(s3_objects, "fault-clf")) >= 1
    assert sum(i.rows for i in partition_infos(s3_objects, "fault-clf")) == 200
    ds = create_dataset(s3_objects, "fault-clf", min_rows=200)
    labelled = [r for r in readings if r.label is not None]
    assert ds.captured_rows == len(labelled) and ds.rows == 200
    assert s3_objects.list("datasets/") == [f"datasets/{ds.id}.json"]
    x, y, _ = materialize(s3_objects, load_dataset(s3_objects, ds.id))
    assert x.shape == (200, 16)
    # files are listed in key order and hold their rows in arrival order
    captured = read_table(s3_objects, [f.key for f in ds.files])
    kept = [label is not None for label in captured.column("label").to_pylist()]
    expected = np.array(
        [f for f, k in zip(captured.column("features").to_pylist(), kept, strict=True) if k],
        dtype=np.float32,
    )
    np.testing.assert_array_equal(x[: len(labelled)], expected)
    assert sorted(LABELS[i] for i in y[: len(labelled)]) == sorted(
        r.label for r in labelled if r.label
    )


def test_a_worker_with_capture_on_captures_what_it_scored(
    mosquitto: Service,
    redis_service: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
    s3_endpoint: str,
) -> None:
    url = s3_url(s3_endpoint)
    settings = bundled_worker_settings(
        mosquitto.url,
        redis_service.url,
        redis_keys,
        unique,
        models=["fault-clf"],
        max_batch=16,
        capture_url=url,
        capture_rate=0.5,
        capture_flush_rows=50,
    )
    sent = fleet(240, prefix=f"cap{unique}")
    with running_worker(settings) as (worker, _stop):
        publish(mosquitto, reading_messages(sent), client_id=f"p{unique}")
        assert wait_for(rclient, redis_keys.predictions, len(sent)) == len(sent)
        registry = worker.metrics.registry
    # leaving the block closed the writer: everything buffered is written
    stored = {(p.device_id, p.seq): p for p in predictions(rclient, redis_keys)}
    objects = open_objects(url)
    try:
        table = read_table(objects, objects.list("readings/"))
    finally:
        objects.close()
    rows = table.to_pylist()
    assert registry.get_sample_value("iotstream_worker_capture_rows_total") == len(rows)
    assert unexposed(generate_latest(registry).decode(), CATALOGUES[2], CATALOGUES[4]) == []
    assert registry.get_sample_value("iotstream_worker_capture_dropped_total") == 0
    assert 0.3 * len(sent) < len(rows) < 0.7 * len(sent)  # rate 0.5 of 240
    assert len({(r["device_id"], r["seq"]) for r in rows}) == len(rows)
    by_key = {(r.device_id, r.seq): r for r in sent}
    for row in rows:
        p = stored[(row["device_id"], row["seq"])]
        reading = by_key[(row["device_id"], row["seq"])]
        assert row["score"] == p.score and row["anomaly"] == p.anomaly
        assert row["predicted"] == p.label and row["label"] == p.truth == reading.label
        assert (row["model"], row["model_version"], row["variant"]) == (
            p.model.name,
            p.model.version,
            p.model.variant,
        )
        assert row["features"] == reading.features and row["boot"] == 3
        assert row["received_ts"] == p.hops.received_ts
