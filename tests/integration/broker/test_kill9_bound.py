"""How many acknowledged QoS 1 messages a broker ``kill -9`` loses with production.conf.

Run: .venv/bin/pytest tests/integration/broker/test_kill9_bound.py -s  (-m slow: 5 trials each)
Mosquitto keeps its state in memory and writes it every ``autosave_interval`` seconds (and on
SIGTERM). A queued message that was PUBACKed after the last save is gone after a kill -9, so
the bound is about ``rate x autosave_interval``. The test measures it over a few trials.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from pathlib import Path

import pytest

from iot_contract import shared_subscription, telemetry_topic
from tests.integration.broker.conftest import start_production
from tests.integration.broker.support import Client, Pki, clients

pytestmark = pytest.mark.integration

RATE = 2000  # messages per second offered by the publisher


def _trial(root: Path, pki: Pki, on_changes: bool, interval: int) -> tuple[int, int]:
    """One crash: returns (acknowledged before the kill, of those lost)."""
    settings: dict[str, str | int] = {
        "autosave_interval": interval,
        "autosave_on_changes": "true" if on_changes else "false",
    }
    with start_production(root, pki, **settings) as broker, clients() as made:
        made.append(worker := Client("worker-k", clean_start=False))
        worker.login("worker", broker.secrets["worker"]).connect(broker.port, session_expiry=600)
        worker.wait("connect")
        worker.subscribe(shared_subscription("workers"))
        worker.close()

        made.append(device := Client("dev-a").login("dev-a", broker.secrets["dev-a"]))
        assert device.outcome(broker.port) == "ok"
        acked_mids: list[int] = []  # the PUBACK may come before publish() returns the mid
        mids: dict[int, int] = {}
        device.paho.on_publish = lambda _c, _u, mid, rc, _p: (
            None if rc.is_failure else acked_mids.append(mid)
        )
        device.paho.reconnect_delay_set(60, 60)
        stop = threading.Event()

        def publish() -> None:
            seq, start = 0, time.monotonic()
            while not stop.is_set():
                if seq < (time.monotonic() - start) * RATE:
                    info = device.paho.publish(telemetry_topic("dev-a"), str(seq).encode(), 1)
                    mids[info.mid] = seq  # fewer than 65535 per trial: mids do not wrap
                    seq += 1
                else:
                    time.sleep(0.001)

        thread = threading.Thread(target=publish)
        thread.start()
        time.sleep(random.uniform(1.5, 3.0))
        broker.process.kill()
        stop.set()
        thread.join()
        before = {mids[mid] for mid in list(acked_mids)}
        broker.process.start()

        made.append(back := Client("worker-k", clean_start=False))
        back.login("worker", broker.secrets["worker"])
        back.subscriptions.append(shared_subscription("workers"))
        back.connect(broker.port, session_expiry=600)
        received = {int(m.payload) for m in back.drain(1.5)}
        return len(before), len(before - received)


@pytest.mark.parametrize(
    ("on_changes", "interval", "bound_ms", "trials"),
    [
        # production.conf's default. 2.0.11 saves when now > last save + interval, in whole
        # seconds, so "1" means a save every 2 s: up to ~2 s of traffic is lost.
        (False, 1, 2300, 1),  # the bounded version in the default run
        pytest.param(False, 1, 2300, 5, marks=pytest.mark.slow),
        # the alternative: a save every 500 changes (messages, subscriptions), whatever the rate
        pytest.param(True, 500, 1000 * 500 / RATE + 300, 5, marks=pytest.mark.slow),
    ],
)
def test_kill9_loss_is_bounded_by_the_autosave_setting(
    tmp_path: Path, pki: Pki, on_changes: bool, interval: int, bound_ms: float, trials: int
) -> None:
    results = [_trial(tmp_path / f"t{i}", pki, on_changes, interval) for i in range(trials)]
    lost = [n for _, n in results]
    window_ms = [1000 * n / RATE for n in lost]
    print(
        f"\nkill -9 at {RATE} msg/s, autosave_interval {interval} "
        f"autosave_on_changes {on_changes}: acked {[a for a, _ in results]}, lost {lost} "
        f"(= {[round(w) for w in window_ms]} ms of traffic; "
        f"median {statistics.median(window_ms):.0f} ms, max {max(window_ms):.0f} ms)"
    )
    assert max(window_ms) <= bound_ms
