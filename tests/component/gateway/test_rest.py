"""REST routes: data, operations, validation and limits."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.component.gateway.conftest import TestClient
from tests.component.gateway.support import Feeder, prediction, token
from tests.harness.metrics import unexposed

AUTH = {"Authorization": f"Bearer {token()}"}
READING = {"device_id": "pump-1", "seq": 1, "ts": 1764129600.0, "features": [0.1, 0.2]}


def test_health_ready_metrics_docs(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 503  # no models in this test's models_dir
    assert ready.json()["checks"] == {"redis": True, "reader": True, "models": False}
    metrics = client.get("/metrics").text
    assert unexposed(metrics, ("gateway", "metrics.toml"), ("gateway.oip", "metrics.toml")) == []
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/predict", "/v1/models", "/v1/devices", "/v1/predictions"} <= set(paths)


def test_devices_and_history(client: TestClient, feeder: Feeder) -> None:
    feeder.write([prediction("a", 1), prediction("b", 1), prediction("a", 2, anomaly=True)])
    feeder.write([prediction(f"c{n}", n) for n in range(5)])
    ids = feeder.ids()
    devices = client.get("/v1/devices", headers=AUTH).json()
    assert [(p["device_id"], p["seq"]) for p in devices["items"]][:2] == [("a", 2), ("b", 1)]
    hist = client.get("/v1/predictions", params={"device": "a"}, headers=AUTH).json()
    assert [p["seq"] for p in hist["items"]] == [1, 2]
    assert hist["last_id"] == ids[2]
    page = client.get("/v1/predictions", params={"since": ids[3], "limit": 2}, headers=AUTH).json()
    assert [p["device_id"] for p in page["items"]] == ["c1", "c2"]
    assert page["last_id"] == ids[5]
    newest = client.get("/v1/predictions", params={"limit": 2}, headers=AUTH).json()
    assert [p["device_id"] for p in newest["items"]] == ["c3", "c4"]


def test_token_claim_restricts_rest_data(client: TestClient, feeder: Feeder) -> None:
    feeder.write([prediction("a", 1), prediction("b", 1)])
    only_b = {"Authorization": f"Bearer {token(devices=['b'])}"}
    assert [p["device_id"] for p in client.get("/v1/devices", headers=only_b).json()["items"]] == [
        "b"
    ]
    hist = client.get("/v1/predictions", headers=only_b).json()["items"]
    assert [p["device_id"] for p in hist] == ["b"]


@pytest.mark.parametrize("path", ["/v1/devices", "/v1/predictions", "/v1/models"])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
def test_rest_needs_a_valid_token(client: TestClient, path: str, headers: dict[str, str]) -> None:
    response = client.get(path, headers=headers)
    assert response.status_code == 401
    assert "nope" not in response.text


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (b'{"device_id": "p", "seq": 1, "ts": 1.0, "features": [NaN]}', None),
        (b'{"device_id": "p", "seq": 1, "ts": 1.0, "features": [Infinity]}', None),
        (b'{"device_id": "p", "seq": 1, "ts": 1.0, "features": [1e999]}', None),
        (orjson.dumps({**READING, "features": ["1.5"]}), "features"),
        (orjson.dumps({**READING, "modle": "x"}), "modle"),
        (b"[{]", None),
    ],
    ids=["nan", "inf", "overflow", "string-number", "unknown-field", "not-json"],
)
def test_predict_rejects_bad_readings_with_422(
    client: TestClient, body: bytes, where: str | None
) -> None:
    response = client.post(
        "/v1/predict", content=body, headers={**AUTH, "content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    detail: list[dict[str, Any]] = response.json()["detail"]
    assert detail and all({"loc", "msg", "type"} <= set(d) for d in detail)
    if where:
        assert any(where in map(str, d["loc"]) for d in detail)


def test_predict_without_models_is_503(client: TestClient) -> None:
    response = client.post("/v1/predict", json=READING, headers=AUTH)
    assert response.status_code == 503


def test_body_limit_and_rate_limit(make_client: Any, feeder: Feeder) -> None:
    client = make_client(max_body_bytes=2048, rest_burst=3, rest_rate_per_s=0.01)
    big = {**READING, "features": [0.5] * 1000}
    assert client.post("/v1/predict", json=big, headers=AUTH).status_code == 413

    def chunks() -> Any:
        for _ in range(10):
            yield b" " * 1000

    chunked = client.post("/v1/predict", content=chunks(), headers=AUTH)
    assert chunked.status_code == 413
    assert client.get("/v1/devices", headers=AUTH).status_code == 200  # the last token
    limited = client.get("/v1/devices", headers=AUTH)
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert client.get("/healthz").status_code == 200  # only /v1 is limited
