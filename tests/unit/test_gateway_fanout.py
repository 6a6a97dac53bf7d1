"""Pure fan-out pieces: items, filters, the per-client channel and the hub."""

from __future__ import annotations

import orjson
import pytest

from gateway.channel import ClientChannel
from gateway.filters import DeviceMatcher, SubscriptionFilter
from gateway.hub import Hub
from gateway.items import StreamItem, encode_heartbeat, encode_predictions, id_key, parse_entry
from gateway.session_state import State, Timeouts
from iot_contract import CloseCode, PredictionsFrame
from tests.component.gateway.support import prediction


def item(n: int, device: str = "d1", *, anomaly: bool = False, model: str = "m1") -> StreamItem:
    raw = prediction(device, n, anomaly=anomaly, model=model).model_dump_json().encode()
    parsed = parse_entry(f"{1000 + n}-0".encode(), {b"m": raw})
    assert parsed is not None
    return parsed


def subscribed(devices: list[str], **kw: object) -> SubscriptionFilter:
    return SubscriptionFilter(devices=DeviceMatcher(devices), **kw)  # type: ignore[arg-type]


def test_parse_entry_reads_filter_fields_and_keeps_raw_bytes() -> None:
    it = item(5, "pump-1", anomaly=True, model="bearing")
    assert (it.id, it.key, it.device_id, it.model, it.anomaly) == (
        "1005-0",
        (1005, 0),
        "pump-1",
        "bearing",
        True,
    )
    assert orjson.loads(it.raw)["seq"] == 5


@pytest.mark.parametrize("fields", [{}, {b"m": b"not json"}, {b"m": b'{"device_id": 1}'}])
def test_parse_entry_skips_foreign_records(fields: dict[bytes, bytes]) -> None:
    assert parse_entry(b"1-0", fields) is None


def test_id_key_orders_numerically() -> None:
    assert id_key("10-0") > id_key("9-99")
    assert id_key(b"5") == (5, 0)


def test_predictions_frame_is_valid_contract_json() -> None:
    frame = encode_predictions([item(1), item(2)], "1002-0", snapshot=True)
    parsed = PredictionsFrame.model_validate_json(frame)
    assert [p.seq for p in parsed.items] == [1, 2]
    assert parsed.last_id == "1002-0"
    assert parsed.snapshot
    assert orjson.loads(encode_heartbeat(None, 1.0)) == {
        "type": "heartbeat",
        "ts": 1.0,
        "last_id": None,
    }


def test_device_matcher_literals_and_globs() -> None:
    m = DeviceMatcher(["pump-1", "fan-*", "x?[0-9]"])
    assert m.match("pump-1") and m.match("fan-77") and m.match("xa7")
    assert not m.match("pump-10") and not m.match("fan") and not m.match("xab")
    assert DeviceMatcher(["*"]).match("anything")
    assert DeviceMatcher.is_literal("pump-1") and not DeviceMatcher.is_literal("p*")


def test_filter_combines_devices_models_anomalies_and_token_restriction() -> None:
    flt = subscribed(
        ["*"],
        models=frozenset({"m1"}),
        anomalies_only=True,
        allowed=DeviceMatcher(["a-*"]),
    )
    items = [
        item(1, "a-1", anomaly=True),
        item(2, "a-1", anomaly=False),
        item(3, "b-1", anomaly=True),
        item(4, "a-2", anomaly=True, model="m2"),
        item(5, "a-3", anomaly=True),
    ]
    assert [i.key[0] for i in flt.select(items)] == [1001, 1005]


def test_channel_delivers_in_order_once_and_skips_replayed_seam() -> None:
    ch = ClientChannel(limit=100)
    ch.begin(subscribed(["*"]), False, "1002-0")
    ch.offer([item(3), item(4)], "1004-0")  # live items arrive while catching up
    assert ch.drain(10).items == []  # held back behind the replay
    ch.mark_replayed((1003, 0))  # the replay already covered 1003
    ch.finish_catch_up()
    drained = ch.drain(10)
    assert [i.id for i in drained.items] == ["1004-0"]
    assert drained.last_id == "1004-0"
    ch.offer([item(4), item(5)], "1005-0")  # a duplicate of 4 is ignored
    assert [i.id for i in ch.drain(10).items] == ["1005-0"]


def test_channel_drain_respects_max_items_and_reports_ids() -> None:
    ch = ClientChannel(limit=100)
    ch.begin(subscribed(["*"]), False, "1000-0")
    ch.finish_catch_up()
    ch.offer([item(n) for n in range(1, 6)], "1007-0")
    first = ch.drain(2)
    assert [i.id for i in first.items] == ["1001-0", "1002-0"]
    assert first.last_id == "1002-0"
    assert ch.wakeup.is_set()
    rest = ch.drain(10)
    assert [i.id for i in rest.items] == ["1003-0", "1004-0", "1005-0"]
    assert rest.last_id == "1007-0"  # everything up to the position is delivered


def test_channel_overflow_requests_slow_close() -> None:
    interrupted: list[bool] = []
    ch = ClientChannel(limit=3, on_close_request=lambda: interrupted.append(True))
    ch.clock = lambda: 7.0
    ch.begin(subscribed(["*"]), False, "1000-0")
    ch.finish_catch_up()
    ch.offer([item(n) for n in range(1, 5)], "1004-0")
    assert ch.slow and ch.close_request == (CloseCode.SLOW_CONSUMER, "slow consumer")
    assert ch.machine.state is State.CLOSING and ch.machine.closing_since == 7.0
    assert interrupted == [True]
    ch.offer([item(5)], "1005-0")  # nothing more is queued once closing
    assert len(ch) == 4 and interrupted == [True]


def test_channel_coalesce_keeps_newest_per_device_in_stream_order() -> None:
    ch = ClientChannel(limit=3)
    ch.begin(subscribed(["*"]), True, "1000-0")
    ch.finish_catch_up()
    dropped = ch.offer(
        [item(1, "a"), item(2, "b"), item(3, "a"), item(4, "c"), item(5, "b")], "1005-0"
    )
    assert dropped == 2 and not ch.slow
    assert [(i.device_id, i.key[0]) for i in ch.drain(10).items] == [
        ("a", 1003),
        ("c", 1004),
        ("b", 1005),
    ]


def test_hub_filters_per_client_and_shares_equal_filters() -> None:
    hub = Hub()
    channels = {}
    for name, devices in {"all": ["*"], "all2": ["*"], "a": ["a"], "none": ["zzz"]}.items():
        ch = ClientChannel(limit=100)
        ch.begin(subscribed(devices), False, "1000-0")
        ch.finish_catch_up()
        hub.register(ch)
        channels[name] = ch
    idle = ClientChannel(limit=100)  # registered but never subscribed
    hub.register(idle)
    hub.publish([item(1, "a"), item(2, "b")], "1002-0")
    got = {n: [i.id for i in ch.drain(10).items] for n, ch in channels.items()}
    assert got == {
        "all": ["1001-0", "1002-0"],
        "all2": ["1001-0", "1002-0"],
        "a": ["1001-0"],
        "none": [],
    }
    assert channels["none"].drain(10).last_id == "1002-0"
    assert len(idle) == 0


def test_hub_drops_slow_channel_without_touching_others() -> None:
    hub = Hub()
    slow = ClientChannel(limit=1)
    fast = ClientChannel(limit=100)
    for ch in (slow, fast):
        ch.begin(subscribed(["*"]), False, "1000-0")
        ch.finish_catch_up()
        hub.register(ch)
    hub.publish([item(1), item(2)], "1002-0")
    assert slow.slow and slow not in hub.channels
    assert fast in hub.channels and len(fast) == 2


def test_sweep_closes_hung_writes_and_expired_tokens_and_asks_for_heartbeats() -> None:
    hub = Hub()
    hung, expired, idle, busy = (ClientChannel(limit=10) for _ in range(4))
    for ch in (hung, expired, idle, busy):
        ch.machine.write_finished(100.0, ok=True)
        hub.register(ch)
    hung.machine.write_started(100.0)
    expired.machine.expires_at = 50.0
    busy.machine.write_finished(119.0, ok=True)
    hub.sweep(now=120.0, wall=60.0, timeouts=Timeouts(send=10.0, heartbeat=15.0))
    assert hung.close_request == (CloseCode.SLOW_CONSUMER, "send timed out")
    assert expired.close_request == (CloseCode.UNAUTHORIZED, "token expired")
    assert idle.machine.heartbeat_due and idle.wakeup.is_set() and idle.close_request is None
    assert not busy.machine.heartbeat_due and busy.close_request is None


def test_unread_control_frames_are_bounded() -> None:
    from gateway.channel import MAX_PENDING_FRAMES

    ch = ClientChannel(limit=10)
    for _ in range(MAX_PENDING_FRAMES + 1):
        ch.push_frame('{"type":"heartbeat","ts":1.0}')
    assert ch.slow and ch.drain(10).frames == []


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_channel_latest_state_sends_newest_per_device_once_per_tick() -> None:
    clock = FakeClock()
    ch = ClientChannel(limit=100, clock=clock)
    ch.begin(subscribed(["*"]), False, "1000-0", latest_every=0.5)
    ch.finish_catch_up()
    assert ch.hold_for() is None  # nothing waits: sleep until woken
    ch.offer([item(1, "a"), item(2, "b"), item(3, "a")], "1003-0")
    assert ch.wakeup.is_set()  # the first item starts the sender's timer
    first = ch.drain(10)
    assert [(i.device_id, i.key[0]) for i in first.items] == [("b", 1002), ("a", 1003)]
    assert first.last_id == "1003-0" and ch.superseded == 1
    ch.wakeup.clear()
    ch.offer([item(4, "a"), item(5, "c"), item(6, "a")], "1006-0")
    assert ch.wakeup.is_set()
    assert ch.drain(10).items == []  # not due yet
    assert ch.hold_for() == 0.5
    clock.now += 0.2
    ch.wakeup.clear()
    ch.offer([item(7, "b")], "1007-0")
    assert not ch.wakeup.is_set()  # the sender is already timing the tick
    assert ch.hold_for() == pytest.approx(0.3)
    clock.now += 0.3
    assert [(i.device_id, i.key[0]) for i in ch.drain(10).items] == [
        ("c", 1005),
        ("a", 1006),
        ("b", 1007),
    ]
    assert ch.superseded == 2 and ch.dropped == 0 and ch.idle


def test_channel_latest_state_is_bounded_by_device_count_and_frame_size() -> None:
    clock = FakeClock()
    ch = ClientChannel(limit=3, clock=clock)
    ch.begin(subscribed(["*"]), False, "1000-0", latest_every=1.0)
    ch.finish_catch_up()
    dropped = ch.offer([item(n, f"d{n}") for n in range(1, 6)], "1005-0")
    assert dropped == 2 and ch.dropped == 2 and len(ch) == 3 and not ch.slow
    part = ch.drain(2)
    assert [i.device_id for i in part.items] == ["d3", "d4"] and part.last_id is None
    assert [i.device_id for i in ch.drain(2).items] == ["d5"]  # the rest, same tick
    ch.stop()
    assert len(ch) == 0
