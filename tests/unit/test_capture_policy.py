"""Capture's pure parts: sampling within binomial bounds, deterministic per reading;
retention's ``expired``; capture keys; dataset ids content-addressed."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from iot_models.capture.datasets import DatasetVersion
from iot_models.capture.layout import COLUMNS, Partition, file_key, parse_key, partition_of
from iot_models.capture.retention import expired
from iot_models.capture.writer import CaptureConfig, CaptureError, sampled


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.5, 0.9])
def test_sampling_rate_within_binomial_bounds(rate: float) -> None:
    # 200 devices x 500 consecutive sequence numbers: the shape of a real fleet's traffic
    n = 100_000
    kept = sum(sampled(f"pump-{d}", seq, rate) for d in range(200) for seq in range(500))
    sigma = math.sqrt(n * rate * (1 - rate))
    assert abs(kept - n * rate) < 5 * sigma, (kept, n * rate, sigma)


def test_sampling_is_uniform_per_device() -> None:
    # every device contributes about its share: no device is left out of a 10 % sample
    for d in range(50):
        kept = sum(sampled(f"fan-{d}", seq, 0.1) for seq in range(2000))
        assert abs(kept - 200) < 5 * math.sqrt(2000 * 0.1 * 0.9), (d, kept)


def test_sampling_is_deterministic_and_monotonic_in_rate() -> None:
    for seq in range(1000):
        assert sampled("pump-1", seq, 0.3) == sampled("pump-1", seq, 0.3)
        if sampled("pump-1", seq, 0.2):  # a smaller sample is a subset of a larger one
            assert sampled("pump-1", seq, 0.3)
    assert all(sampled("d", s, 1.0) for s in range(100))
    assert not any(sampled("d", s, 0.0) for s in range(100))
    assert sampled("d", 2**70, 0.5) in (True, False)  # huge seqs do not raise


def test_config_refuses_a_rate_outside_0_1() -> None:
    with pytest.raises(CaptureError, match="between 0 and 1"):
        CaptureConfig(rate=1.5)


def hour(text: str) -> Partition:
    return partition_of("fault-clf", datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp())


def test_expired_keeps_hours_within_retention() -> None:
    now = datetime(2026, 11, 30, 12, 30, tzinfo=UTC).timestamp()
    parts = [hour(f"2026-11-30T{h:02d}:00") for h in range(13)] + [hour("2026-11-29T23:00")]
    # 2 h retention at 12:30: an hour expires 2 h after it ended; 09:00-10:00 ended 2.5 h ago
    gone = expired(parts, now, 2.0)
    assert gone == sorted(p for p in parts if p.start + 3600 < now - 7200)
    assert hour("2026-11-30T09:00") in gone
    assert hour("2026-11-30T10:00") not in gone  # ended at 11:00, 1.5 h before now
    assert hour("2026-11-29T23:00") in gone
    assert expired(parts, now, 1000.0) == []
    assert expired([], now, 1.0) == []


def test_partition_of_and_keys_round_trip() -> None:
    ts = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    part = partition_of("vib-ae", ts)
    assert part == Partition("vib-ae", "2026-01-02", 3)
    key = file_key(part, "worker/0 x", ts, 17)
    assert key.startswith("readings/vib-ae/date=2026-01-02/hour=03/worker_0_x-")
    assert key.endswith("-17.parquet")
    assert parse_key(key) == part
    assert part.start == datetime(2026, 1, 2, 3, tzinfo=UTC).timestamp()
    for other in (
        "datasets/abc.json",
        "readings/vib-ae/date=2026-01-02/hour=3/x.parquet",
        "readings/vib-ae/date=2026-01-02/hour=03/x.json",
        "readings/a/b/date=2026-01-02/hour=03/x.parquet",
    ):
        assert parse_key(other) is None, other


def content(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "schema_version": 1,
        "model": "fault-clf",
        "files": [{"key": "readings/a.parquet", "sha256": "0" * 64, "rows": 3, "labelled": 2}],
        "synthetic": {"rows": 10, "seed": 101, "generator": "iot_models.sensors.make_dataset"},
        "label_policy": {"min_rows": 12},
    }
    return base | changes


def test_dataset_id_is_content_addressed() -> None:
    first = DatasetVersion.content_id(content())
    # created_at and the id itself do not count; key order does not matter
    assert DatasetVersion.content_id(content(created_at="2026-01-01", id="x")) == first
    assert DatasetVersion.content_id(dict(reversed(list(content().items())))) == first
    # every part of the selection does
    assert DatasetVersion.content_id(content(model="vib-ae")) != first
    assert DatasetVersion.content_id(content(synthetic=None)) != first
    changed = [{"key": "readings/a.parquet", "sha256": "1" * 64, "rows": 3, "labelled": 2}]
    assert DatasetVersion.content_id(content(files=changed)) != first
    assert len(first) == 64 and int(first, 16) >= 0


def test_the_schema_table_in_the_docs_matches_columns() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "models.md").read_text()
    section = text.split("\n## Capture\n", 1)[1].split("\n## ", 1)[0]
    section = section.split("| column | type | meaning |", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \| ([^|]+) \|$", section, re.MULTILINE)
    assert [(name, kind.strip(), meaning.strip()) for name, kind, meaning in rows] == list(COLUMNS)


def test_the_worker_imports_pyarrow_only_when_capture_is_on() -> None:
    code = (
        "import sys, contextlib\n"
        "import inference_worker.app\n"
        "from prometheus_client import CollectorRegistry\n"
        "from inference_worker.settings import WorkerSettings\n"
        "from inference_worker.observers import open_observers\n"
        "with contextlib.ExitStack() as stack:\n"
        "    off = open_observers(WorkerSettings(), CollectorRegistry(), stack)\n"
        "    assert 'pyarrow' not in sys.modules, 'pyarrow imported with capture off'\n"
        "    assert not [o for o in off if type(o).__name__ == 'CaptureWriter']\n"
        "    sys.modules['pyarrow'] = None  # as if the capture extra were not installed\n"
        "    from iot_models.capture.writer import CaptureError\n"
        "    try:\n"
        "        open_observers(WorkerSettings(capture_url='/tmp/x'), CollectorRegistry(), stack)\n"
        "    except CaptureError as exc:\n"
        "        print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "pip install 'iotstream[capture]'" in done.stdout
