"""POST /v1/predict and GET /v1/models on the repository's built models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from iot_contract import Prediction, Reading
from iot_models.core import InferenceCore
from iot_models.onnx_model import load_models
from tests.component.gateway.conftest import TestClient
from tests.component.gateway.support import Feeder, token

MODELS = Path(__file__).resolve().parents[3] / "models"
AUTH = {"Authorization": f"Bearer {token()}"}


def reading(seq: int, **kw: Any) -> dict[str, Any]:
    features = [1.0 + 0.1 * i + 0.01 * seq for i in range(16)]
    return {"device_id": "pump-1", "seq": seq, "ts": 1764129600.0 + seq, "features": features, **kw}


@pytest.fixture
def served(make_client: Any, feeder: Feeder) -> TestClient:
    client: TestClient = make_client(models_dir=str(MODELS))
    return client


def comparable(p: Prediction | dict[str, Any]) -> dict[str, Any]:
    data = p.model_dump(mode="json", exclude_none=True) if isinstance(p, Prediction) else dict(p)
    data.pop("hops")
    data.pop("worker_id")
    return data


def test_models_lists_manifests(served: TestClient) -> None:
    models = served.get("/v1/models", headers=AUTH).json()
    assert {"fault-clf", "vib-ae"} <= {m["name"] for m in models}
    assert all("input" in m and "variants" in m for m in models)
    assert served.get("/readyz").json()["ready"] is True


def test_single_and_batch_predict_match_the_core(served: TestClient) -> None:
    one = served.post("/v1/predict", json=reading(1), headers=AUTH)
    assert one.status_code == 200, one.text
    assert one.json()["indices"] == [0] and one.json()["rejected"] == []
    batch = [reading(n) for n in range(5)] + [reading(9, model="nope"), reading(10)]
    batch[3]["features"] = batch[3]["features"][:3]
    response = served.post("/v1/predict", json=batch, headers=AUTH).json()
    assert response["indices"] == [0, 1, 2, 4, 6]
    assert [(r["index"], r["reason"]) for r in response["rejected"]] == [
        (3, "feature_count"),
        (5, "unknown_model"),
    ]
    core = InferenceCore(load_models(MODELS), default_model="fault-clf", worker_id="x")
    readings = [Reading.model_validate(batch[i]) for i in response["indices"]]
    expected = core.infer(readings, 0.0).predictions
    assert [comparable(p) for p in response["predictions"]] == [comparable(p) for p in expected]


def test_batch_size_cap(make_client: Any, feeder: Feeder) -> None:
    client = make_client(models_dir=str(MODELS), max_batch_readings=2)
    response = client.post("/v1/predict", json=[reading(n) for n in range(3)], headers=AUTH)
    assert response.status_code == 422
