"""The REST path follows the model store like the workers: ``POST /v1/predict`` and
``GET /v1/models`` move to the new version when the alias moves; a canary device gets the
canary version on REST too."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.swap_bench import copy_as_version
from iot_models.canary import CanaryRule
from iot_models.store import Alias, Canary, open_store
from tests.component.gateway.conftest import TestClient
from tests.component.gateway.support import Feeder, token

AUTH = {"Authorization": f"Bearer {token()}"}
FEATURES = [2.0, 2.1, 1.2, 3.0, 3.0, 3.1, 1.5, 3.2, 45.0, 60.0, 10.0, 10.1, 9.9, 4.0, 30.0, 2950.0]


def version_of(client: TestClient, device: str) -> str:
    body = {"device_id": device, "seq": 1, "ts": 1.7e9, "features": FEATURES}
    response = client.post("/v1/predict", json=body, headers=AUTH)
    assert response.status_code == 200, response.text
    version: str = response.json()["predictions"][0]["model"]["version"]
    return version


def test_rest_follows_the_alias(make_client: Any, feeder: Feeder, tmp_path: Path) -> None:
    store = open_store(tmp_path / "store")
    for version in ("1", "2"):
        store.publish(copy_as_version(tmp_path / "builds", version))
    token_1 = store.write_alias(Alias(model="fault-clf", alias="production", version="1"), None)
    client: TestClient = make_client(
        model_store=str(tmp_path / "store"),
        model_poll_s=0.1,
        model_cache_dir=str(tmp_path / "cache"),
    )
    assert version_of(client, "pump-1") == "1"
    assert [m["version"] for m in client.get("/v1/models", headers=AUTH).json()] == ["1"]

    canary = Canary(version="2", percent=0, devices=("lab-*",))
    store.write_alias(
        Alias(model="fault-clf", alias="production", version="1", canary=canary), token_1
    )
    deadline = time.monotonic() + 10
    while version_of(client, "lab-7") != "2":
        assert time.monotonic() < deadline, "the gateway did not follow the alias"
        time.sleep(0.05)
    assert CanaryRule("fault-clf", 0, ("lab-*",)).applies("lab-7")
    assert version_of(client, "pump-1") == "1"
    models = client.get("/v1/models", headers=AUTH).json()
    assert sorted(m["version"] for m in models) == ["1", "2"]
