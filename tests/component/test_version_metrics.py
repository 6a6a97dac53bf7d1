"""Per-version metrics of a worker serving a canary (issue #13): the real core on the
bundled ``fault-clf`` with a copy relabelled version 2 as a 30 % canary; the anomaly,
score and inference-latency series of each version add up to what its records say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry

from bench.swap_bench import copy_as_version
from inference_worker.model_follow import ModelMetrics
from iot_contract import Reading
from iot_models.canary import CanaryRule
from iot_models.core import BatchResult, InferenceCore
from iot_models.onnx_model import load_models
from iot_models.sensors import make_dataset

MODELS = Path(__file__).resolve().parents[2] / "models"


def canary_core(tmp_path: Path, percent: float) -> InferenceCore:
    stable = load_models(MODELS, ["fault-clf"])["fault-clf"]
    copy_as_version(tmp_path / "builds", "2")
    canary = load_models(tmp_path / "builds", ["fault-clf"])["fault-clf"]
    assert (stable.info.version, canary.info.version) == ("1", "2")
    return InferenceCore(
        {"fault-clf": stable},
        default_model="fault-clf",
        worker_id="w-versions",
        canaries={"fault-clf": (canary, CanaryRule("fault-clf", percent))},
    )


def batches(n_batches: int, size: int = 64) -> list[list[Reading]]:
    x, _ = make_dataset(n_batches * size, seed=11)
    readings = [
        Reading(device_id=f"pump-{i % 200}", seq=i, ts=1.7e9 + i, features=[float(v) for v in row])
        for i, row in enumerate(x)
    ]
    return [readings[k : k + size] for k in range(0, len(readings), size)]


def value(registry: CollectorRegistry, name: str, version: str, **labels: str) -> float:
    got = registry.get_sample_value(name, {"model": "fault-clf", "version": version, **labels})
    assert got is not None, f"{name}{{version={version}, {labels}}} is missing"
    return got


def test_anomaly_score_and_latency_series_per_version_match_the_records(tmp_path: Path) -> None:
    core = canary_core(tmp_path, 30.0)
    registry = CollectorRegistry()
    metrics = ModelMetrics(registry)
    results: list[BatchResult] = []
    for batch in batches(12):
        result = core.infer(batch, 1.7e9)
        metrics.count(result)
        results.append(result)
    records = [r for result in results for r in result.records]
    for version in ("1", "2"):
        mine = [r for r in records if r["model"]["version"] == version]
        scores = np.array([r["score"] for r in mine])
        assert 0.1 * len(records) < len(mine) < 0.9 * len(records), "both versions score"
        assert value(registry, "worker_predictions_by_version_total", version) == len(mine)
        assert value(registry, "worker_anomalies_by_version_total", version) == sum(
            1 for r in mine if r["anomaly"]
        )
        assert value(registry, "worker_score_by_version_count", version) == len(mine)
        total = value(registry, "worker_score_by_version_sum", version)
        assert abs(total - scores.sum()) < 1e-9
        for le in (0.05, 0.5, 0.9, 3.0):
            assert value(registry, "worker_score_by_version_bucket", version, le=str(le)) == int(
                (scores <= le).sum()
            )
        assert value(registry, "worker_score_by_version_bucket", version, le="+Inf") == len(mine)
        timings = [r.seconds_by_version[("fault-clf", version)] for r in results]
        assert all(t > 0 for t in timings)
        assert value(registry, "worker_inference_seconds_by_version_count", version) == len(results)
        assert (
            abs(value(registry, "worker_inference_seconds_by_version_sum", version) - sum(timings))
            < 1e-9
        )
    assert sum(np.array([r["anomaly"] for r in records])) > 0, "the data has anomalies"
