"""The Open Inference Protocol (KServe V2) over REST, in-process: metadata, readiness, JSON
and binary-data inference on the repository's models, and the protocol's errors."""

from __future__ import annotations

import json
import struct
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from iot_contract import Reading
from iot_models.core import InferenceCore
from iot_models.onnx_model import load_models
from tests.component.gateway.conftest import TestClient
from tests.component.gateway.support import Feeder, token

MODELS = Path(__file__).resolve().parents[3] / "models"
AUTH = {"Authorization": f"Bearer {token()}"}


def rows(n: int) -> np.ndarray:
    base = np.arange(16, dtype=np.float32) * 0.1 + 1.0
    return np.stack([base + np.float32(0.01 * k) for k in range(n)]).astype(np.float32)


def infer_body(x: np.ndarray, **extra: Any) -> dict[str, Any]:
    tensor = {"name": "features", "datatype": "FP32", "shape": list(x.shape), "data": x.tolist()}
    return {"inputs": [tensor], **extra}


@pytest.fixture
def served(make_client: Any, feeder: Feeder) -> TestClient:
    client: TestClient = make_client(models_dir=str(MODELS), oip_max_wait_ms=1.0)
    return client


def test_health_and_server_metadata(served: TestClient) -> None:
    assert served.get("/v2/health/live").json() == {"live": True}
    assert served.get("/v2/health/ready").status_code == 200
    assert served.get("/v2").status_code == 401
    meta = served.get("/v2", headers=AUTH).json()
    assert meta["name"] == "iotstream" and "binary_tensor_data" in meta["extensions"]


def test_model_metadata_and_readiness(served: TestClient) -> None:
    meta = served.get("/v2/models/fault-clf", headers=AUTH).json()
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 16]}]
    assert [o["name"] for o in meta["outputs"]] == ["score", "anomaly", "label", "probabilities"]
    version = meta["versions"][0]
    assert served.get(f"/v2/models/fault-clf/versions/{version}", headers=AUTH).status_code == 200
    assert served.get("/v2/models/fault-clf/ready", headers=AUTH).status_code == 200
    ae = served.get("/v2/models/vib-ae", headers=AUTH).json()
    assert [o["name"] for o in ae["outputs"]] == ["score", "anomaly"]


def test_json_inference_equals_the_core(served: TestClient) -> None:
    x = rows(3)
    response = served.post("/v2/models/fault-clf/infer", json=infer_body(x, id="r1"), headers=AUTH)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_name"] == "fault-clf" and body["id"] == "r1"
    out = {o["name"]: o for o in body["outputs"]}
    assert out["probabilities"]["shape"] == [3, 6] and out["score"]["shape"] == [3]
    core = InferenceCore(load_models(MODELS), default_model="fault-clf", worker_id="x")
    readings = [
        Reading(device_id="oip", seq=i, ts=0.0, model="fault-clf", features=row.tolist())
        for i, row in enumerate(x)
    ]
    expected = core.infer(readings, 0.0).records
    assert out["score"]["data"] == [float(np.float32(r["score"])) for r in expected]
    assert out["anomaly"]["data"] == [r["anomaly"] for r in expected]
    assert out["label"]["data"] == [r["label"] for r in expected]


def test_binary_data_extension(served: TestClient) -> None:
    x = rows(2)
    raw = x.astype("<f4").tobytes()
    header = {
        "inputs": [
            {
                "name": "features",
                "datatype": "FP32",
                "shape": [2, 16],
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "outputs": [
            {"name": "score", "parameters": {"binary_data": True}},
            {"name": "label", "parameters": {"binary_data": True}},
            {"name": "anomaly"},
        ],
    }
    head = json.dumps(header).encode()
    response = served.post(
        "/v2/models/fault-clf/infer",
        content=head + raw,
        headers={**AUTH, "Inference-Header-Content-Length": str(len(head))},
    )
    assert response.status_code == 200, response.text
    split = int(response.headers["inference-header-content-length"])
    doc = json.loads(response.content[:split])
    blob = response.content[split:]
    score_size = doc["outputs"][0]["parameters"]["binary_data_size"]
    assert score_size == 8 and "data" in doc["outputs"][2]
    scores = np.frombuffer(blob[:score_size], dtype="<f4")
    json_scores = served.post(
        "/v2/models/fault-clf/infer", json=infer_body(x), headers=AUTH
    ).json()["outputs"][0]["data"]
    assert scores.tolist() == json_scores
    labels_raw = blob[score_size:]
    (first,) = struct.unpack_from("<I", labels_raw)
    assert labels_raw[4 : 4 + first].decode().isidentifier()


@pytest.mark.parametrize(
    ("path", "body", "status", "says"),
    [
        ("/v2/models/nope/infer", infer_body(rows(1)), 404, "unknown model"),
        ("/v2/models/fault-clf/versions/99/infer", infer_body(rows(1)), 404, "no version"),
        ("/v2/models/fault-clf/infer", infer_body(rows(1)[:, :3]), 400, "shape"),
        (
            "/v2/models/fault-clf/infer",
            {"inputs": [{"name": "features", "datatype": "INT32", "shape": [1, 16], "data": [1]}]},
            400,
            "datatype",
        ),
        (
            "/v2/models/fault-clf/infer",
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 16], "data": [0] * 16}]},
            400,
            "unexpected input",
        ),
        (
            "/v2/models/fault-clf/infer",
            {"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 16], "data": [1]}]},
            400,
            "1 values",
        ),
        ("/v2/models/fault-clf/infer", {"inputs": "no"}, 400, "invalid request"),
        (
            "/v2/models/fault-clf/infer",
            infer_body(rows(1), outputs=[{"name": "nope"}]),
            400,
            "no output",
        ),
        (
            "/v2/models/fault-clf/infer",
            infer_body(rows(1), parameters={"device_id": "bad id!"}),
            400,
            "device_id",
        ),
    ],
)
def test_protocol_errors(
    served: TestClient, path: str, body: dict[str, Any], status: int, says: str
) -> None:
    response = served.post(path, json=body, headers=AUTH)
    assert response.status_code == status, response.text
    assert says in response.json()["error"]


def test_malformed_bodies_are_400_not_500(served: TestClient) -> None:
    url = "/v2/models/fault-clf/infer"
    assert served.post(url, content=b"{", headers=AUTH).status_code == 400
    bad_split = {**AUTH, "Inference-Header-Content-Length": "999999"}
    assert served.post(url, content=b"{}", headers=bad_split).status_code == 400
    big = {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 16], "data": [1e39] * 16}]
    }
    assert served.post(url, json=big, headers=AUTH).status_code == 400


def test_metrics_count_requests_per_model_and_protocol(served: TestClient) -> None:
    for _ in range(3):
        served.post("/v2/models/fault-clf/infer", json=infer_body(rows(1)), headers=AUTH)
    served.post("/v2/models/nope/infer", json=infer_body(rows(1)), headers=AUTH)
    text = served.get("/metrics").text
    assert (
        'iotstream_gateway_oip_requests_total{model="fault-clf",outcome="ok",protocol="rest"} 3.0'
        in text
    )
    assert 'model="unknown",outcome="not_found",protocol="rest"' in text
    assert "iotstream_gateway_oip_batch_requests_count 3.0" in text


def test_a_full_batcher_queue_answers_429(make_client: Any, feeder: Feeder) -> None:
    # One request waits in an open batch (max_wait 1 s, batch never fills); the queue holds
    # one, so a second request is refused at once.
    client: TestClient = make_client(
        models_dir=str(MODELS), oip_max_queue=1, oip_max_batch=64, oip_max_wait_ms=1000
    )
    first: dict[str, int] = {}

    def waiting() -> None:
        response = client.post("/v2/models/fault-clf/infer", json=infer_body(rows(1)), headers=AUTH)
        first["status"] = response.status_code

    thread = threading.Thread(target=waiting)
    thread.start()
    deadline = time.monotonic() + 10
    while "iotstream_gateway_oip_queue_requests 1.0" not in client.get("/metrics").text:
        assert time.monotonic() < deadline, "the first request never queued"
        time.sleep(0.01)
    refused = client.post("/v2/models/fault-clf/infer", json=infer_body(rows(1)), headers=AUTH)
    assert refused.status_code == 429 and "queue full" in refused.json()["error"]
    thread.join(timeout=15)
    assert first == {"status": 200}
    assert (
        'iotstream_gateway_oip_rejections_total{reason="queue_full"} 1.0'
        in client.get("/metrics").text
    )
