"""The /ws protocol through Starlette's TestClient, on a real Redis."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from starlette.websockets import WebSocketDisconnect

from iot_contract import CloseCode, PredictionsFrame, SubscribedFrame
from tests.component.gateway.conftest import TestClient
from tests.component.gateway.support import ORIGIN, Feeder, prediction, token

BEARER = ["bearer", token()]


def frames_until(ws: Any, n_items: int) -> list[dict[str, Any]]:
    """Prediction items received until ``n_items`` have arrived."""
    items: list[dict[str, Any]] = []
    while len(items) < n_items:
        frame = orjson.loads(ws.receive_text())
        if frame["type"] == "predictions":
            items.extend(frame["items"])
    return items


def caught_up(client: TestClient, last_id: str) -> None:
    """Wait until the gateway's stream reader has read up to ``last_id``."""
    auth = {"Authorization": f"Bearer {token()}"}
    deadline = time.monotonic() + 10
    while client.get("/v1/devices", headers=auth).json()["last_id"] != last_id:
        assert time.monotonic() < deadline, "the gateway's reader did not catch up"
        time.sleep(0.01)


def close_code(ws: Any) -> int:
    """Read until the server closes; the close code."""
    try:
        while True:
            ws.receive_text()
    except WebSocketDisconnect as exc:
        return exc.code


def subscribe(ws: Any, **fields: Any) -> SubscribedFrame:
    ws.send_text(orjson.dumps({"type": "subscribe", **fields}).decode())
    return SubscribedFrame.model_validate_json(ws.receive_text())


def test_live_subscription_gets_new_predictions_in_order(
    client: TestClient, feeder: Feeder
) -> None:
    with client.websocket_connect("/ws", subprotocols=BEARER) as ws:
        assert str(ws.accepted_subprotocol) == "bearer"
        sub = subscribe(ws)
        assert sub.recovered and sub.epoch == feeder.epoch
        feeder.write(prediction("d1", n) for n in range(5))
        assert [p["seq"] for p in frames_until(ws, 5)] == [0, 1, 2, 3, 4]


def test_filters_devices_models_anomalies(client: TestClient, feeder: Feeder) -> None:
    with client.websocket_connect("/ws", subprotocols=BEARER) as ws:
        subscribe(ws, devices=["pump-*", "fan-1"], models=["m1"], anomalies_only=True)
        feeder.write(
            [
                prediction("pump-1", 1, anomaly=True),
                prediction("pump-2", 1, anomaly=False),
                prediction("fan-1", 1, anomaly=True, model="m2"),
                prediction("fan-2", 1, anomaly=True),
                prediction("fan-1", 2, anomaly=True),
            ]
        )
        got = frames_until(ws, 2)
        assert [(p["device_id"], p["seq"]) for p in got] == [("pump-1", 1), ("fan-1", 2)]


def test_since_last_n_and_exact_resume(client: TestClient, feeder: Feeder) -> None:
    feeder.write(prediction("d1", n) for n in range(10))
    ids = feeder.ids()
    caught_up(client, ids[-1])
    with client.websocket_connect("/ws", subprotocols=BEARER) as ws:
        sub = subscribe(ws, since="-3")
        assert sub.recovered
        assert [p["seq"] for p in frames_until(ws, 3)] == [7, 8, 9]
    with client.websocket_connect("/ws", subprotocols=BEARER) as ws:
        sub = subscribe(ws, since=ids[4], epoch=feeder.epoch)
        assert sub.recovered
        replay = PredictionsFrame.model_validate_json(ws.receive_text())
        assert [p.seq for p in replay.items] == [5, 6, 7, 8, 9]
        assert replay.last_id == ids[-1]
        feeder.write([prediction("d1", 10)])
        assert [p["seq"] for p in frames_until(ws, 1)] == [10]


def test_other_epoch_gives_recovered_false_and_snapshot(client: TestClient, feeder: Feeder) -> None:
    feeder.write([prediction("a", 1), prediction("b", 1), prediction("a", 2, anomaly=True)])
    ids = feeder.ids()
    with client.websocket_connect("/ws", subprotocols=BEARER) as ws:
        sub = subscribe(ws, since=ids[0], epoch="an-old-epoch")
        assert not sub.recovered
        snap = PredictionsFrame.model_validate_json(ws.receive_text())
        assert snap.snapshot
        assert sorted((p.device_id, p.seq) for p in snap.items) == [("a", 2), ("b", 1)]


def test_ping_unsubscribe_and_bad_messages(client: TestClient, feeder: Feeder) -> None:
    with client.websocket_connect("/ws", subprotocols=BEARER) as ws:
        ws.send_text('{"type":"ping"}')
        assert orjson.loads(ws.receive_text())["type"] == "heartbeat"
        ws.send_text('{"type":"subscribe","since":"yesterday"}')
        error = orjson.loads(ws.receive_text())
        assert error["type"] == "error" and error["code"] == "invalid"
        subscribe(ws)
        ws.send_text('{"type":"unsubscribe"}')
        feeder.write([prediction("d1", 1)])
        ws.send_text('{"type":"ping"}')  # the heartbeat comes, no predictions before it
        assert orjson.loads(ws.receive_text())["type"] == "heartbeat"
        ws.send_text("{not json")
        assert orjson.loads(ws.receive_text())["code"] == "malformed"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == CloseCode.BAD_REQUEST


def test_token_in_first_message(client: TestClient, feeder: Feeder) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.send_text(orjson.dumps({"type": "auth", "token": token()}).decode())
        assert subscribe(ws).recovered


@pytest.mark.parametrize(
    "first",
    [
        {"type": "auth", "token": token(aud="other")},
        {"type": "subscribe"},
    ],
    ids=["bad-token", "no-auth"],
)
def test_first_message_auth_failures_close_4401(client: TestClient, first: dict[str, Any]) -> None:
    with client.websocket_connect("/ws") as ws:
        ws.send_text(orjson.dumps(first).decode())
        assert orjson.loads(ws.receive_text())["code"] == "unauthorized"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == CloseCode.UNAUTHORIZED


@pytest.mark.parametrize(
    ("headers", "protocols"),
    [
        ({}, ["bearer", token(aud="other")]),
        ({}, ["bearer"]),
        ({"origin": "http://evil.example"}, BEARER),
    ],
    ids=["bad-token", "empty-token", "foreign-origin"],
)
def test_refused_before_accept(
    client: TestClient, headers: dict[str, str], protocols: list[str]
) -> None:
    with (
        pytest.raises(WebSocketDisconnect),
        client.websocket_connect("/ws", subprotocols=protocols, headers=headers),
    ):
        pass
    assert client.get("/healthz").status_code == 200


def test_allowed_origin_and_token_device_restriction(client: TestClient, feeder: Feeder) -> None:
    restricted = ["bearer", token(devices=["pump-*"])]
    with client.websocket_connect("/ws", subprotocols=restricted, headers={"origin": ORIGIN}) as ws:
        subscribe(ws, devices=["*"])
        feeder.write([prediction("fan-1", 1), prediction("pump-9", 1)])
        assert [p["device_id"] for p in frames_until(ws, 1)] == ["pump-9"]
        ws.send_text('{"type":"subscribe","devices":["fan-1"]}')
        assert orjson.loads(ws.receive_text())["code"] == "forbidden"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_text()
        assert closed.value.code == CloseCode.FORBIDDEN


def test_coalescing_client_keeps_newest_per_device(make_client: Any, feeder: Feeder) -> None:
    client = make_client(client_queue_items=5, batch_window_ms=200)
    with client.websocket_connect("/ws", subprotocols=BEARER) as ws:
        subscribe(ws, coalesce=True)
        feeder.write(prediction(f"d{n % 3}", n) for n in range(30))
        got = frames_until(ws, 3)
        assert {(p["device_id"], p["seq"]) for p in got} >= {("d0", 27), ("d1", 28), ("d2", 29)}
        assert got[-1]["seq"] == 29
    dropped = [
        line
        for line in client.get("/metrics").text.splitlines()
        if line.startswith("iotstream_gateway_dropped_items_total ")
    ]
    assert dropped and float(dropped[0].split()[1]) >= 30 - len(got), dropped


def test_epoch_change_closes_clients_and_voids_their_offsets(
    client: TestClient, feeder: Feeder
) -> None:
    feeder.write([prediction("a", 1)])
    old_id = feeder.ids()[-1]
    caught_up(client, old_id)
    with client.websocket_connect("/ws", subprotocols=BEARER) as ws:
        old_epoch = subscribe(ws).epoch
        feeder.client.set(feeder.keys.epoch, "a-new-epoch")  # the stream was reset
        assert close_code(ws) == CloseCode.GOING_AWAY
    with client.websocket_connect("/ws", subprotocols=BEARER) as ws:
        sub = subscribe(ws, since=old_id, epoch=old_epoch)
        assert not sub.recovered and sub.epoch == "a-new-epoch"
        snapshot = PredictionsFrame.model_validate_json(ws.receive_text())
        assert snapshot.snapshot and [p.device_id for p in snapshot.items] == ["a"]


def test_latest_state_subscription_starts_with_snapshot_then_ticks(
    client: TestClient, feeder: Feeder
) -> None:
    feeder.write([prediction("a", 1), prediction("b", 1)])
    caught_up(client, feeder.ids()[-1])
    with client.websocket_connect("/ws", subprotocols=BEARER) as ws:
        sub = subscribe(ws, latest_every_ms=300, since="-100")
        assert not sub.recovered  # a state view has nothing to resume
        snapshot = PredictionsFrame.model_validate_json(ws.receive_text())
        assert snapshot.snapshot and [p.device_id for p in snapshot.items] == ["a", "b"]
        feeder.write(prediction(d, n) for n in range(2, 40) for d in ("a", "b", "c"))
        seen: dict[str, int] = {}
        while seen != {"a": 39, "b": 39, "c": 39}:
            frame = PredictionsFrame.model_validate_json(ws.receive_text())
            devices = [p.device_id for p in frame.items]
            assert len(devices) == len(set(devices))  # at most one item per device per tick
            seen.update((p.device_id, p.seq) for p in frame.items)


def test_latest_state_tick_does_not_delay_control_frames(
    client: TestClient, feeder: Feeder
) -> None:
    with client.websocket_connect("/ws", subprotocols=BEARER) as ws:
        subscribe(ws, latest_every_ms=10_000)
        assert PredictionsFrame.model_validate_json(ws.receive_text()).snapshot
        feeder.write([prediction("a", 1)])
        assert [p["seq"] for p in frames_until(ws, 1)] == [1]  # the first tick is immediate
        feeder.write([prediction("a", 2)])  # waits for the next tick, 10 s away
        caught_up(client, feeder.ids()[-1])
        started = time.monotonic()
        ws.send_text('{"type":"ping"}')
        assert orjson.loads(ws.receive_text())["type"] == "heartbeat"
        assert time.monotonic() - started < 5
