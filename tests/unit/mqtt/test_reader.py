"""The worker client's own socket reader, fed by a stand-in broker on a local socket.

Only paho's public API drives it (``connect``, ``loop_read``, ``socket``): the reader
replaces paho's ``_packet_read``, and ``loop_read`` is how paho calls that.
"""

from __future__ import annotations

import random
import re
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from inference_worker.mqtt_source import MqttSource
from inference_worker.settings import WorkerSettings
from iot_mqtt.codec import Publish, encode_publish
from iot_mqtt.paho_client import SUPPORTED_PAHO, WorkerClient, check_paho_version
from iot_mqtt.wire import split_packets

CONNACK = b"\x20\x02\x00\x00"
SUBACK = b"\x90\x03\x00\x01\x01"


@dataclass
class Wired:
    """A 3.1.1 worker client connected to ``broker``, the test's end of the connection."""

    client: WorkerClient
    broker: socket.socket
    got: list[Publish | str] = field(default_factory=list)
    """The fast path's messages, and the control packets paho handled, by name."""


@contextmanager
def connected(client: WorkerClient) -> Iterator[socket.socket]:
    """Connect ``client`` to a listening socket of ours; yields our end, CONNECT read."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        client.connect("127.0.0.1", server.getsockname()[1])
        broker, _ = server.accept()
    with broker:
        broker.settimeout(5.0)
        assert broker.recv(4096)[:1] == b"\x10", "CONNECT"
        try:
            yield broker
        finally:
            client.close_sockets()


@pytest.fixture
def wired() -> Iterator[Wired]:
    client = WorkerClient(CallbackAPIVersion.VERSION2, client_id="t", protocol=mqtt.MQTTv311)
    with connected(client) as broker:
        w = Wired(client, broker)
        client.on_publishes = w.got.extend
        client.on_connect = lambda *_args: w.got.append("CONNACK")
        client.on_subscribe = lambda *_args: w.got.append("SUBACK")
        yield w


def read_all(client: mqtt.Client, wait: float = 5.0) -> MQTTErrorCode:
    """Wait up to ``wait`` seconds for bytes, then let the client read until none are left;
    returns the first result that is not success (the connection ended)."""
    sock = client.socket()
    while sock is not None and select.select([sock], [], [], wait)[0]:
        rc = client.loop_read()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return rc
        wait = 0
    return MQTTErrorCode.MQTT_ERR_SUCCESS


def packet(p: Publish) -> bytes:
    """``p`` encoded as a broker sends it."""
    return encode_publish(p.topic.encode(), p.payload, p.qos, p.mid)


def test_packets_in_random_pieces_come_out_whole_and_in_order(wired: Wired) -> None:
    rng = random.Random(7)
    messages = [
        Publish(f"devices/d{i}/telemetry", rng.randbytes(rng.choice([10, 300, 70_000])), None, i, 1)
        for i in range(1, 40)
    ]
    expected: list[Publish | str] = ["CONNACK", *messages[:20], "SUBACK", *messages[20:]]
    control = {"CONNACK": CONNACK, "SUBACK": SUBACK}
    stream = b"".join(control[p] if isinstance(p, str) else packet(p) for p in expected)
    pos = 0
    while pos < len(stream):
        step = rng.randint(1, 50_000)
        wired.broker.sendall(stream[pos : pos + step])
        pos += step
        read_all(wired.client)
    assert wired.got == expected, "control packets went to paho's handlers, in order"
    assert wired.client.pending_bytes == 0


def test_a_large_packet_in_many_reads_is_joined_once(
    wired: Wired, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-joining everything on every read would copy a 4 MB packet ~500 times."""
    scanned: list[int] = []

    def counting(data: bytes, v5: bool) -> tuple[list[object], int]:
        scanned.append(len(data))
        return split_packets(data, v5)  # type: ignore[return-value]

    monkeypatch.setattr("iot_mqtt.paho_client.split_packets", counting)
    big = encode_publish(b"devices/big/telemetry", b"x" * 4_000_000, 1, 9)
    for pos in range(0, len(big), 8192):
        wired.broker.sendall(big[pos : pos + 8192])
        read_all(wired.client)
    [message] = wired.got
    assert isinstance(message, Publish)
    assert (message.mid, len(message.payload)) == (9, 4_000_000)
    assert wired.client.pending_bytes == 0
    assert sum(scanned) < 2 * len(big), f"{len(scanned)} splits over {sum(scanned)} bytes"


def test_what_came_before_the_end_of_the_connection_is_delivered(wired: Wired) -> None:
    first = encode_publish(b"devices/a/telemetry", b"{}", 1, 1)
    wired.broker.sendall(first + encode_publish(b"devices/a/telemetry", b"{}", 1, 2)[:5])
    wired.broker.shutdown(socket.SHUT_WR)
    assert read_all(wired.client) == MQTTErrorCode.MQTT_ERR_CONN_LOST
    assert [p.mid for p in wired.got if isinstance(p, Publish)] == [1]


def test_a_read_waits_out_the_read_interval_but_not_past_the_timer(wired: Wired) -> None:
    """A batch due before the next read takes what has arrived by then (the read comes at
    the timer), not a read interval later; with no timer the interval holds."""
    client = wired.client
    client.read_interval = 0.5
    one = Publish("devices/a/telemetry", b"{}", None, 1, 1)
    two = Publish("devices/a/telemetry", b"{}", None, 2, 1)
    wired.broker.sendall(packet(one))
    read_all(client)  # the read that starts the interval
    wired.broker.sendall(packet(two))
    started = time.monotonic()
    client.timer_at = started + 0.05
    read_all(client)
    took = time.monotonic() - started
    assert wired.got == [one, two]
    assert 0.04 <= took < 0.3, f"read after {took:.3f} s: the timer was due at 0.05 s"
    client.timer_at = None
    wired.broker.sendall(packet(one))
    started = time.monotonic()
    read_all(client)
    assert time.monotonic() - started >= 0.4, "no timer: the read interval holds"


def test_acks_for_a_batch_go_out_in_one_write(wired: Wired) -> None:
    assert wired.client.ack_many([1, 2, 300]) == 3
    assert wired.broker.recv(100) == b"\x40\x02\x00\x01\x40\x02\x00\x02\x40\x02\x01\x2c"
    assert wired.client.ack_many([]) == 0


def on_network_thread() -> bool:
    return threading.current_thread().name.startswith("paho-mqtt-client-")


def test_the_timer_runs_on_the_network_thread_when_nothing_arrives(wired: Wired) -> None:
    """The select waits no longer than ``timer_at``; ``on_timer``'s answer sets the next."""
    client = wired.client
    calls: list[tuple[bool, float]] = []
    done = threading.Event()

    def on_timer() -> float | None:
        calls.append((on_network_thread(), time.monotonic()))
        if len(calls) < 2:
            return 0.01
        done.set()
        return None

    client.on_timer = on_timer
    due = client.timer_at = time.monotonic() + 0.02
    client.loop_start()
    try:
        assert done.wait(10), "the timer did not run"
    finally:
        client.loop_stop()
    assert [on_thread for on_thread, _ in calls] == [True, True]
    assert calls[0][1] >= due and calls[1][1] >= calls[0][1] + 0.01, "not before it was due"
    assert wired.got == [], "nothing was read"
    assert client.timer_at is None, "None: no further call"


def test_acks_on_the_network_thread_are_written_at_once(wired: Wired) -> None:
    """Not queued for paho's next loop turn (which another thread's acks still are)."""
    client = wired.client
    queued: list[bool] = []

    def on_timer() -> None:
        assert client.ack_many([5, 6]) == 2
        queued.append(client.want_write())

    client.on_timer = on_timer
    client.timer_at = time.monotonic()
    client.loop_start()
    try:
        assert wired.broker.recv(100) == b"\x40\x02\x00\x05\x40\x02\x00\x06"
    finally:
        client.loop_stop()
    assert queued == [False]


def test_what_paho_handles_reaches_the_source_buffer_too(tmp_path: Path) -> None:
    """A QoS 2 PUBLISH goes to paho's handlers (PUBREC, then delivery on PUBREL) and from
    its on_message into the same buffer as the fast path's messages."""
    source = MqttSource(
        WorkerSettings(
            mqtt_url="mqtt://127.0.0.1:1", mqtt_protocol="3.1.1", worker_id="t", models_dir=tmp_path
        )
    )
    with connected(source.client) as broker:
        broker.sendall(encode_publish(b"devices/d/telemetry", b"[]", 1, 4))
        broker.sendall(encode_publish(b"devices/d/telemetry", b"{}", 2, 5))
        read_all(source.client)
        assert broker.recv(100) == b"\x50\x02\x00\x05", "PUBREC 5"
        broker.sendall(b"\x62\x02\x00\x05")  # PUBREL 5
        read_all(source.client)
        items = source.take(10, timeout=0)
        assert [(i.mid, i.qos, i.payload) for i in items] == [(4, 1, b"[]"), (5, 2, b"{}")]


@pytest.mark.parametrize("version", ["2.2.0", "2.2.1", "2.2.0rc1", "2.2"])
def test_paho_versions_of_the_supported_line_are_accepted(version: str) -> None:
    check_paho_version(version)


@pytest.mark.parametrize("version", ["2.1.0", "2.3.0", "2.20.0", "3.2.0", "1.6.1"])
def test_other_paho_versions_are_refused_at_import(version: str) -> None:
    why = rf"needs paho-mqtt 2\.2\.x, found {re.escape(version)}: .* paho internals"
    with pytest.raises(ImportError, match=why):
        check_paho_version(version)


def test_the_installed_paho_is_the_supported_one() -> None:
    """The lock files pin what the reader was written against (requirements/*.txt)."""
    assert paho.mqtt.__version__.startswith(SUPPORTED_PAHO + ".")


def publishes(*mids: int) -> bytes:
    return b"".join(packet(Publish("devices/a/telemetry", b"{}", None, m, 1)) for m in mids)


def test_a_read_says_since_when_its_bytes_waited_for_a_busy_thread(wired: Wired) -> None:
    """Readings flowing (two packets a read): what the next read brings has waited in the
    socket since the read before, however long this thread was busy meanwhile."""
    client = wired.client
    wired.broker.sendall(publishes(1, 2))
    before = time.monotonic()
    read_all(client)
    after = time.monotonic()
    wired.broker.sendall(publishes(3, 4))
    time.sleep(0.03)  # scoring a batch, say
    read_all(client)
    assert before <= client.read_since <= after, "since the read before"


def test_a_turn_that_found_nothing_moves_the_start_of_the_wait(wired: Wired) -> None:
    client = wired.client
    wired.broker.sendall(publishes(1, 2))
    read_all(client)
    quiet = time.monotonic()
    client.loop(timeout=0.02)  # a turn of the loop: the socket had nothing
    wired.broker.sendall(publishes(3, 4))
    read_all(client)
    assert client.read_since >= quiet + 0.015, "not before the turn that found nothing"


def test_a_trickle_waits_since_the_select_woke_for_it(wired: Wired) -> None:
    """One packet a read: the select sleeps until the data comes, which waited no longer."""
    client = wired.client
    wired.broker.sendall(publishes(1))
    read_all(client)
    sender = threading.Timer(0.05, wired.broker.sendall, (publishes(2),))
    started = time.monotonic()
    sender.start()
    client.loop(timeout=2.0)
    sender.join()
    assert [p.mid for p in wired.got if isinstance(p, Publish)] == [1, 2]
    assert client.read_since >= started + 0.04, "from when the select woke"


def test_the_source_spreads_a_reads_readings_over_the_time_they_waited(tmp_path: Path) -> None:
    """A read's readings arrived one after another since its bytes began to wait: their
    estimated arrivals (what the adaptive policy times a batch from) are spread evenly
    between then and the hand-over, all earlier than the read."""
    source = MqttSource(
        WorkerSettings(
            mqtt_url="mqtt://127.0.0.1:1", mqtt_protocol="3.1.1", worker_id="t", models_dir=tmp_path
        )
    )
    with connected(source.client) as broker:
        broker.sendall(publishes(1))
        read_all(source.client)
        broker.sendall(publishes(2, 3, 4))
        time.sleep(0.03)
        read_all(source.client)
        items = source.take(10, timeout=0)
    assert [i.mid for i in items] == [1, 2, 3, 4]
    since, handed = source.client.read_since, items[1].queued_at
    step = (handed - since) / 4
    assert step > 0.03 / 4 - 1e-4, "they waited at least as long as the sleep"
    assert [i.arrived_at for i in items[1:]] == pytest.approx(
        [since + step * k for k in (1, 2, 3)], abs=1e-9
    )
