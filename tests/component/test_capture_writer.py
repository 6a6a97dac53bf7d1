"""The capture writer on a folder store with the real ``fault-clf`` model: rows round-trip
through pyarrow's Hive-partitioned dataset with the documented schema, sampling matches the
pure test, retention deletes old partitions only, a failing store costs dropped rows (counted)
and never an exception; dataset versions are content-addressed and materialize the captured
rows, failing clearly when a file changed or went missing."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
from prometheus_client import CollectorRegistry

from inference_worker.app import build_core
from inference_worker.settings import WorkerSettings
from iot_contract import Reading
from iot_models.capture.datasets import (
    DatasetError,
    create_dataset,
    list_datasets,
    load_dataset,
    materialize,
)
from iot_models.capture.layout import COLUMNS, arrow_schema, file_key, parse_key, partition_of
from iot_models.capture.reader import list_partitions, partition_infos, read_table
from iot_models.capture.retention import apply_retention
from iot_models.capture.writer import CaptureConfig, CaptureWriter, sampled
from iot_models.core import InferenceCore
from iot_models.sensors import LABELS, make_dataset
from iot_models.store.errors import StoreAuthError, StoreUnavailableError
from iot_models.store.objects import FileObjectStore, ObjectNotFoundError, ObjectStore
from iotstream.cli import main
from tests.component.worker_support import until

MODELS = Path(__file__).resolve().parents[2] / "models"
T0 = datetime(2025, 6, 30, 10, 15, tzinfo=UTC).timestamp()  # in the past: retention


@pytest.fixture(scope="module")
def core() -> InferenceCore:
    return build_core(WorkerSettings(models_dir=MODELS, models=["fault-clf"], worker_id="w-cap"))


def fleet(n: int, *, labelled_every: int = 2, seed: int = 5) -> list[Reading]:
    """``n`` readings from 8 devices; every ``labelled_every``-th carries its true label."""
    x, y = make_dataset(n, seed)
    return [
        Reading(
            device_id=f"pump-{i % 8}",
            seq=i,
            ts=T0 + i,
            features=[float(v) for v in x[i]],
            label=LABELS[int(y[i])] if i % labelled_every == 0 else None,
        )
        for i in range(n)
    ]


def feed(writer: CaptureWriter, core: InferenceCore, readings: list[Reading], t0: float) -> None:
    for start in range(0, len(readings), 64):
        batch = readings[start : start + 64]
        received = [t0 + start + k for k in range(len(batch))]
        writer.observe(batch, received, core.infer(batch, received))


def value(registry: CollectorRegistry, name: str) -> float:
    got = registry.get_sample_value(name)
    return 0.0 if got is None else got


def test_rows_round_trip_with_the_documented_schema(core: InferenceCore, tmp_path: Path) -> None:
    objects = FileObjectStore(tmp_path)
    registry = CollectorRegistry()
    readings = fleet(300)
    config = CaptureConfig(flush_rows=100, retention_hours=None)
    # received across an hour boundary: two partitions
    t0 = T0 + 45 * 60 - 150
    with CaptureWriter(objects, config, worker_id="w-cap", registry=registry) as writer:
        feed(writer, core, readings, t0)
        assert writer.flush()
    assert value(registry, "iotstream_worker_capture_rows_total") == 300
    assert value(registry, "iotstream_worker_capture_bytes_total") > 0
    assert len(list_partitions(objects, "fault-clf")) == 2

    ds = pads.dataset(tmp_path / "readings" / "fault-clf", partitioning="hive", format="parquet")
    table = ds.to_table()
    assert table.num_rows == 300
    file_fields = [f for f in ds.schema if f.name not in ("date", "hour")]
    assert [(f.name, f.type) for f in file_fields] == [(f.name, f.type) for f in arrow_schema()]
    assert [f.name for f in file_fields] == [name for name, _, _ in COLUMNS]
    assert sorted(set(table.column("hour").to_pylist())) == [10, 11]
    assert set(table.column("date").to_pylist()) == {"2025-06-30"}

    rows = sorted(
        table.select(["seq", "device_id", "features", "label", "score"]).to_pylist(),
        key=lambda r: r["seq"],
    )
    received = [t0 + i for i in range(300)]
    expected = core.infer(readings, received).records
    for row, reading, record in zip(rows, readings, expected, strict=True):
        assert row["seq"] == reading.seq and row["device_id"] == reading.device_id
        assert row["features"] == reading.features
        assert row["label"] == reading.label
        assert row["score"] == pytest.approx(record["score"])
    one = read_table(objects, objects.list("readings/")[:1])
    assert one.schema == arrow_schema()


def test_a_sample_keeps_exactly_the_sampled_readings(core: InferenceCore, tmp_path: Path) -> None:
    objects = FileObjectStore(tmp_path)
    readings = fleet(640)
    with CaptureWriter(objects, CaptureConfig(rate=0.25), worker_id="w") as writer:
        feed(writer, core, readings, T0)
    table = read_table(objects, objects.list("readings/"))
    columns = (table.column("device_id").to_pylist(), table.column("seq").to_pylist())
    kept = sorted(zip(*columns, strict=True))
    assert kept == sorted(
        (r.device_id, r.seq) for r in readings if sampled(r.device_id, r.seq, 0.25)
    )
    assert 100 < len(kept) < 220


def test_buffers_are_written_after_flush_seconds(core: InferenceCore, tmp_path: Path) -> None:
    objects = FileObjectStore(tmp_path)
    config = CaptureConfig(flush_rows=10_000, flush_seconds=0.5)
    with CaptureWriter(objects, config, worker_id="w") as writer:
        started = time.monotonic()
        feed(writer, core, fleet(10), time.time())
        assert objects.list("readings/") == []  # 10 rows: not a full buffer
        until(lambda: len(objects.list("readings/")) == 1, timeout=5.0)
        assert 0.4 < time.monotonic() - started < 2.0


def put_partition(objects: ObjectStore, model: str, ts: float, rows: int = 1) -> str:
    key = file_key(partition_of(model, ts), "w-old", ts, rows)
    objects.put(key, b"not read by retention")
    return key


def test_retention_deletes_old_partitions_and_keeps_new(
    core: InferenceCore, tmp_path: Path
) -> None:
    objects = FileObjectStore(tmp_path)
    now = T0
    old = [
        put_partition(objects, m, now - h * 3600) for m in ("fault-clf", "vib-ae") for h in (5, 30)
    ]
    new = [put_partition(objects, "fault-clf", now - h * 3600) for h in (0, 1, 2)]
    objects.put("datasets/keep.json", b"{}")

    assert set(apply_retention(objects, now, 4.0, dry_run=True)) == {
        partition_of(m, now - h * 3600) for m in ("fault-clf", "vib-ae") for h in (5, 30)
    }
    assert set(objects.list()) == {*old, *new, "datasets/keep.json"}
    # the writer's own pass: at start, and on the injected clock
    config = CaptureConfig(retention_hours=4.0)
    with CaptureWriter(objects, config, worker_id="w", clock=lambda: now):
        until(lambda: set(objects.list()) == {*new, "datasets/keep.json"})
    assert not (tmp_path / "readings" / "vib-ae").exists()  # empty folders go too


class BrokenStore(FileObjectStore):
    """A folder store whose writes fail while ``down`` is set (an unreachable S3)."""

    down = True

    def put(self, key: str, data: bytes) -> None:
        if self.down:
            raise StoreUnavailableError("capture store down (test)")
        super().put(key, data)


def test_a_failing_store_drops_the_oldest_batches_and_never_raises(
    core: InferenceCore, tmp_path: Path
) -> None:
    objects = BrokenStore(tmp_path)
    registry = CollectorRegistry()
    config = CaptureConfig(flush_rows=64, queue_batches=2, close_timeout=0.5)
    writer = CaptureWriter(objects, config, worker_id="w", registry=registry)
    with writer:
        feed(writer, core, fleet(64 * 8), T0)  # 8 cut batches, 1 being written, 2 queued
        until(lambda: value(registry, "iotstream_worker_capture_write_failures_total") >= 1)
        dropped = value(registry, "iotstream_worker_capture_dropped_total")
        assert dropped >= 64 * 5 and dropped % 64 == 0
        objects.down = False  # back: the retried batch and the queue are written
        assert writer.flush(timeout=10.0)
    written = value(registry, "iotstream_worker_capture_rows_total")
    assert written + value(registry, "iotstream_worker_capture_dropped_total") == 64 * 8
    assert written >= 64 * 2
    assert len(read_table(objects, objects.list("readings/"))) == written


class RefusingStore(FileObjectStore):
    """A folder store that refuses one model's files (as S3 does with a bad policy)."""

    def put(self, key: str, data: bytes) -> None:
        if "/vib-ae/" in key:
            raise StoreAuthError("refused (test)")
        super().put(key, data)


def test_a_refused_file_is_dropped_without_retry(tmp_path: Path) -> None:
    core = build_core(
        WorkerSettings(models_dir=MODELS, models=["fault-clf", "vib-ae"], worker_id="w")
    )
    objects = RefusingStore(tmp_path)
    registry = CollectorRegistry()
    readings = [r.model_copy(update={"model": "vib-ae"}) for r in fleet(30)] + fleet(20)
    with CaptureWriter(objects, CaptureConfig(), worker_id="w", registry=registry) as writer:
        feed(writer, core, readings, T0)
        assert writer.flush(timeout=2.0)  # no retry pending
    assert value(registry, "iotstream_worker_capture_dropped_total") == 30
    assert value(registry, "iotstream_worker_capture_write_failures_total") == 1
    assert value(registry, "iotstream_worker_capture_rows_total") == 20
    parts = [parse_key(k) for k in objects.list("readings/")]
    assert [p.model if p else None for p in parts] == ["fault-clf"]


def test_close_gives_up_after_close_timeout(core: InferenceCore, tmp_path: Path) -> None:
    objects = BrokenStore(tmp_path)
    registry = CollectorRegistry()
    config = CaptureConfig(flush_rows=1000, close_timeout=0.3)
    with CaptureWriter(objects, config, worker_id="w", registry=registry) as writer:
        feed(writer, core, fleet(100), T0)
        started = time.monotonic()
    assert time.monotonic() - started < 5.0
    assert value(registry, "iotstream_worker_capture_dropped_total") == 100
    assert objects.list() == []


def capture(objects: ObjectStore, core: InferenceCore, readings: list[Reading]) -> None:
    with CaptureWriter(objects, CaptureConfig(retention_hours=None), worker_id="w") as writer:
        feed(writer, core, readings, T0)


def test_dataset_versions_are_content_addressed_and_materialize(
    core: InferenceCore, tmp_path: Path
) -> None:
    objects = FileObjectStore(tmp_path)
    readings = fleet(200)
    capture(objects, core, readings)
    labelled = [r for r in readings if r.label is not None]

    ds = create_dataset(objects, "fault-clf", min_rows=150, synthetic_seed=9)
    assert ds.captured_rows == 100 and ds.synthetic is not None and ds.synthetic.rows == 50
    assert ds.rows == 150 and objects.list("datasets/") == [f"datasets/{ds.id}.json"]
    again = create_dataset(objects, "fault-clf", min_rows=150, synthetic_seed=9)
    assert again == ds  # same selection, same id, same record (created_at kept)
    assert create_dataset(objects, "fault-clf", min_rows=10).id != ds.id
    assert load_dataset(objects, ds.id) == ds
    assert ds.id in {d.id for d in list_datasets(objects)}

    x, y, names = materialize(objects, load_dataset(objects, ds.id))
    assert x.dtype == np.float32 and x.shape == (150, 16) and y.dtype == np.int64
    assert names[0] == "vib_rms_x_mm_s" and len(names) == 16
    np.testing.assert_array_equal(x[:100], np.array([r.features for r in labelled], np.float32))
    assert [LABELS[i] for i in y[:100]] == [r.label for r in labelled]
    sx, sy = make_dataset(50, 9)
    np.testing.assert_array_equal(x[100:], sx)
    np.testing.assert_array_equal(y[100:], sy)
    x2, y2, _ = materialize(objects, ds)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)


def test_dataset_windows_select_whole_hours(core: InferenceCore, tmp_path: Path) -> None:
    objects = FileObjectStore(tmp_path)
    capture(objects, core, fleet(40))
    hour_start = T0 - 15 * 60
    assert create_dataset(objects, "fault-clf", since=hour_start + 3599).captured_rows == 20
    assert (
        create_dataset(
            objects, "fault-clf", until=datetime.fromtimestamp(hour_start + 1, UTC)
        ).captured_rows
        == 20
    )
    with pytest.raises(DatasetError, match="no labelled rows"):
        create_dataset(objects, "fault-clf", since=hour_start + 3600)
    only_synthetic = create_dataset(objects, "fault-clf", since=hour_start + 3600, min_rows=5)
    assert only_synthetic.files == () and only_synthetic.rows == 5


def test_materialize_names_a_changed_or_missing_file(core: InferenceCore, tmp_path: Path) -> None:
    objects = FileObjectStore(tmp_path)
    capture(objects, core, fleet(100))
    ds = create_dataset(objects, "fault-clf")
    key = ds.files[0].key
    data = objects.get(key)
    objects.put(key, data + b"\0")
    with pytest.raises(DatasetError, match=f"{key} changed"):
        materialize(objects, ds)
    objects.delete(key)
    with pytest.raises(DatasetError, match=f"{key} is missing"):
        materialize(objects, ds)
    with pytest.raises(DatasetError, match="no dataset"):
        load_dataset(objects, "0" * 64)
    with pytest.raises(DatasetError, match="not a dataset id"):
        load_dataset(objects, "../x")
    # a record edited after the fact no longer matches its id
    record = objects.get(f"datasets/{ds.id}.json").replace(b'"fault-clf"', b'"vib-ae"')
    objects.put(f"datasets/{ds.id}.json", record)
    with pytest.raises(DatasetError, match="does not match its id"):
        load_dataset(objects, ds.id)


def test_folder_object_store_contract(tmp_path: Path) -> None:
    objects = FileObjectStore(tmp_path / "root")
    assert objects.list() == [] and objects.sizes() == {}
    objects.put("a/b/c.bin", b"123")
    objects.put("a/b/c.bin", b"1234")  # replaced whole
    objects.put("a/d.bin", b"")
    assert objects.get("a/b/c.bin") == b"1234"
    assert objects.list() == ["a/b/c.bin", "a/d.bin"]
    assert objects.list("a/b/") == ["a/b/c.bin"]
    assert objects.sizes("a/") == {"a/b/c.bin": 4, "a/d.bin": 0}
    with pytest.raises(ObjectNotFoundError):
        objects.get("a/nope")
    objects.delete("a/b/c.bin")
    objects.delete("a/b/c.bin")  # already gone: no error
    assert objects.list() == ["a/d.bin"] and not (tmp_path / "root" / "a" / "b").exists()
    assert partition_infos(objects) == []


def test_data_cli(
    core: InferenceCore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = FileObjectStore(tmp_path / "capture")
    capture(objects, core, fleet(60))
    monkeypatch.setenv("IOTSTREAM_CAPTURE_URL", str(tmp_path / "capture"))
    assert main(["data", "ls"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[:5] == [
        "fault-clf",
        "1",
        "1",
        "60",
        str(objects.sizes()[objects.list()[0]]),
    ]
    assert main(["data", "dataset", "create", "--model", "fault-clf", "--min-rows", "40"]) == 0
    dataset_id = capsys.readouterr().out.strip()
    ds = load_dataset(objects, dataset_id)
    assert (ds.captured_rows, ds.rows) == (30, 40)  # topped up with 10 synthetic rows
    assert main(["data", "dataset", "show", dataset_id[:10]]) == 0
    assert f'"id": "{dataset_id}"' in capsys.readouterr().out
    assert main(["data", "dataset", "ls"]) == 0
    assert dataset_id[:16] in capsys.readouterr().out
    assert main(["data", "retention", "--hours", "1", "--dry-run"]) == 0
    assert "would delete 1 partitions" in capsys.readouterr().err
    assert objects.list("readings/") != []
    # clear errors, exit 1
    assert main(["data", "dataset", "show", "0" * 64]) == 1
    assert "no dataset 000" in capsys.readouterr().err
    assert main(["data", "dataset", "create", "--model", "vib-ae"]) == 1
    assert "no labelled rows for 'vib-ae'" in capsys.readouterr().err
    monkeypatch.delenv("IOTSTREAM_CAPTURE_URL")
    assert main(["data", "ls"]) == 1
    assert "no capture store" in capsys.readouterr().err
