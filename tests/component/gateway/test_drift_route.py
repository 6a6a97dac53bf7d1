"""``GET /v1/drift`` on the session's real Redis: the newest status per model and the last
events, written here the way workers write them (:mod:`iot_contract.drift`); a malformed
record is left out and counted, never a 500; the same token rule as the other data routes."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
import pytest
import redis

from iot_contract import RECORD_FIELD, DriftEvent, DriftStatus, FeatureDrift, RedisKeys
from tests.component.gateway.conftest import TestClient
from tests.component.gateway.support import token

AUTH = {"Authorization": f"Bearer {token()}"}


def drift_status(model: str, psi: list[float], *, threshold: float = 0.2) -> DriftStatus:
    """A status of ``model`` with one feature per PSI value (``f0``, ``f1``, ...)."""
    return DriftStatus(
        model=model,
        version="3",
        ts=time.time(),
        window=2000,
        psi_max=max(psi),
        threshold=threshold,
        drifting=max(psi) > threshold,
        features=[
            FeatureDrift(name=f"f{i}", psi=v, live_mean=1.0 + v, reference_mean=1.0)
            for i, v in enumerate(psi)
        ],
        worker_id="w1",
    )


def drift_event(model: str, drifting: bool, ts: float) -> DriftEvent:
    """An event of ``model`` starting (or stopping) to drift at ``ts``."""
    return DriftEvent(
        model=model,
        version="3",
        ts=ts,
        drifting=drifting,
        psi_max=0.4 if drifting else 0.05,
        threshold=0.2,
        feature="f1",
        worker_id="w1",
    )


def write_status(client: redis.Redis, keys: RedisKeys, status: DriftStatus) -> None:
    client.hset(keys.drift, status.model, status.model_dump_json())


def write_event(client: redis.Redis, keys: RedisKeys, event: DriftEvent | bytes) -> None:
    raw = event if isinstance(event, bytes) else event.model_dump_json().encode()
    client.xadd(keys.drift_events, {RECORD_FIELD: raw})


def test_newest_status_per_model_and_newest_events_first(
    client: TestClient, rclient: redis.Redis, redis_keys: RedisKeys
) -> None:
    drifting = drift_status("fault-clf", [0.05, 0.41, 0.12])
    calm = drift_status("vib-ae", [0.01, 0.02])
    write_status(rclient, redis_keys, drift_status("fault-clf", [0.01, 0.02, 0.03]))
    write_status(rclient, redis_keys, drifting)  # the newer status replaces the older
    write_status(rclient, redis_keys, calm)
    t0 = time.time()
    sent = [drift_event("fault-clf", i % 2 == 0, t0 + i) for i in range(30)]
    for event in sent:
        write_event(rclient, redis_keys, event)

    view = client.get("/v1/drift", headers=AUTH)
    assert view.status_code == 200, view.text
    body = view.json()
    assert [DriftStatus.model_validate(m) for m in body["models"]] == [drifting, calm]
    assert body["models"][0]["drifting"] is True and body["models"][1]["drifting"] is False
    assert [DriftEvent.model_validate(e) for e in body["events"]] == sent[::-1][:20]
    assert body["skipped"] == 0

    five = client.get("/v1/drift", params={"events": 5}, headers=AUTH).json()
    assert [e["ts"] for e in five["events"]] == [e.ts for e in sent[::-1][:5]]
    assert client.get("/v1/drift", params={"events": 0}, headers=AUTH).json()["events"] == []


def test_nothing_reported_yet_is_an_empty_view(client: TestClient) -> None:
    body = client.get("/v1/drift", headers=AUTH).json()
    assert body == {"models": [], "events": [], "skipped": 0}


def test_malformed_records_are_skipped_and_logged_never_a_500(
    client: TestClient,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = drift_status("fault-clf", [0.3, 0.1])
    write_status(rclient, redis_keys, good)
    rclient.hset(redis_keys.drift, "broken", b'{"model": "broken", "psi_max": "high"')
    negative = good.model_dump(mode="json") | {"model": "neg", "psi_max": -1.0}
    rclient.hset(redis_keys.drift, "neg", orjson.dumps(negative))  # valid JSON, not a status
    write_event(rclient, redis_keys, drift_event("fault-clf", True, time.time()))
    write_event(rclient, redis_keys, b"\xff not json")
    rclient.xadd(redis_keys.drift_events, {b"other": b"{}"})  # no record field at all

    with caplog.at_level("WARNING", logger="gateway.routes.drift"):
        view = client.get("/v1/drift", headers=AUTH)
    assert view.status_code == 200, view.text
    body = view.json()
    assert [m["model"] for m in body["models"]] == ["fault-clf"]
    assert len(body["events"]) == 1 and body["events"][0]["drifting"] is True
    assert body["skipped"] == 4
    assert "skipped 4 drift record(s)" in caplog.text


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
def test_drift_needs_a_valid_token(
    client: TestClient,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    headers: dict[str, str],
) -> None:
    write_status(rclient, redis_keys, drift_status("fault-clf", [0.3]))
    response = client.get("/v1/drift", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "fault-clf" not in response.text


@pytest.mark.parametrize("events", ["-1", "201", "x"])
def test_bad_event_counts_are_422(client: TestClient, events: str) -> None:
    response = client.get("/v1/drift", params={"events": events}, headers=AUTH)
    assert response.status_code == 422


def test_documented_in_the_openapi_schema(make_client: Callable[..., TestClient]) -> None:
    schema = make_client().get("/openapi.json").json()
    op = schema["paths"]["/v1/drift"]["get"]
    assert op["security"] and {"200", "401", "503"} <= set(op["responses"])
    assert {"DriftView", "DriftStatus", "DriftEvent"} <= set(schema["components"]["schemas"])
