"""The staged intake (``iotstream ingest`` + workers with ``source=stream``) against real
Mosquitto and Redis: every reading stored once, a graceful broker restart under load loses
no acknowledged reading, and a frozen worker's readings are claimed by the other.

The direct path (workers on ``$share/...``) fails the last two on Mosquitto 2.0.11: a
restored shared subscription delivers nothing until renewed, and a frozen member keeps its
turn (docs/streaming.md, "Staged intake").
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from device_sim.app import run as run_sim
from device_sim.fleet import FleetStats
from device_sim.settings import SimSettings
from inference_worker.app import running_worker
from inference_worker.ingest import running_ingest
from iot_contract import Prediction, RedisKeys
from iotstream.localservices import MosquittoProcess
from tests.harness.models import linear_core
from tests.harness.pipeline import (
    predictions,
    publish,
    reading_messages,
    settle,
    wait_for,
    worker_settings,
)
from tests.harness.services import Service

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def stream_settings(mqtt_url: str, redis_url: str, keys: RedisKeys, unique: str, **kw: object):
    return worker_settings(
        mqtt_url, redis_url, keys, unique, source="stream", claim_every_s=0.2, **kw
    )


def assert_each_reading_once(got: list[Prediction], published: dict[str, int]) -> None:
    """Every device's seqs 1..n stored exactly once (n = readings it published)."""
    counts = Counter((p.device_id, p.seq) for p in got)
    duplicated = {k: c for k, c in counts.items() if c > 1}
    assert duplicated == {}
    by_device: dict[str, set[int]] = defaultdict(set)
    for device, seq in counts:
        by_device[device].add(seq)
    missing = {d: n - len(by_device[d] & set(range(1, n + 1))) for d, n in published.items()}
    assert {d: m for d, m in missing.items() if m} == {}


def assert_published_once(got: list[Prediction], stats: FleetStats) -> None:
    """As many distinct readings stored as the simulator had acknowledged, none twice."""
    counts = Counter((p.device_id, p.boot, p.seq) for p in got)
    assert {k: c for k, c in counts.items() if c > 1} == {}
    assert len(counts) == stats.published == stats.acked


def test_staged_readings_are_stored_once_and_the_stream_is_trimmed(
    mosquitto: Service,
    redis_service: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
) -> None:
    from iot_contract import Reading

    ingest = stream_settings(mosquitto.url, redis_service.url, redis_keys, unique)
    ingest = ingest.model_copy(update={"worker_id": f"ingest-{unique}"})
    sent = [
        Reading(device_id=f"d{unique}-{i % 5}", seq=i // 5 + 1, ts=1.7e9 + i, features=[1, 2, 3])
        for i in range(300)
    ]
    workers = [
        stream_settings(mosquitto.url, redis_service.url, redis_keys, f"{unique}{n}").model_copy(
            update={"share_group": f"g{unique}"}
        )
        for n in (1, 2)
    ]
    with (
        running_ingest(ingest),
        running_worker(workers[0], linear_core(workers[0].worker_id)),
        running_worker(workers[1], linear_core(workers[1].worker_id)),
    ):
        publish(mosquitto, reading_messages(sent), client_id=f"p{unique}")
        assert wait_for(rclient, redis_keys.predictions, 300) == 300
        deadline = time.monotonic() + 10
        while rclient.xlen(redis_keys.ingest) > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        backlog = rclient.xlen(redis_keys.ingest)
    got = predictions(rclient, redis_keys)
    assert_each_reading_once(got, {f"d{unique}-{i}": 60 for i in range(5)})
    assert {p.worker_id for p in got} == {w.worker_id for w in workers}, "both workers scored"
    pending = rclient.xpending(redis_keys.ingest, f"g{unique}")
    assert pending["pending"] == 0
    assert backlog < 300, "acknowledged entries are trimmed"


@contextlib.contextmanager
def raw_load(
    mqtt_url: str, *, rate: float, devices: int, prefix: str, connections: int = 1
) -> Iterator[list[FleetStats]]:
    """The raw-client simulator publishing ``rate`` readings/s at QoS 1 on a thread; leaving
    the block stops it and waits for its last acknowledgements (the list then holds its
    stats)."""
    settings = SimSettings(
        mqtt_url=mqtt_url,
        devices=devices,
        rate=rate / devices,
        device_prefix=prefix,
        mode="load",
        connections=connections,
        load_client="raw",
        protocol="3.1.1",
    )
    stop, out = threading.Event(), list[FleetStats]()
    thread = threading.Thread(target=lambda: out.append(run_sim(settings, stop)), daemon=True)
    thread.start()
    try:
        yield out
    finally:
        stop.set()
        thread.join(180)
    assert out, "the simulator did not finish"


@pytest.mark.parametrize(
    ("rate", "restarts"),
    [
        pytest.param(1500, 1, id="1500-per-s-1-restart"),
        pytest.param(
            3000,
            5,
            id="3000-per-s-5-restarts",
            marks=[pytest.mark.slow, pytest.mark.timeout(900)],
        ),
    ],
)
def test_a_graceful_broker_restart_under_load_loses_no_acknowledged_reading(
    rate: int,
    restarts: int,
    tmp_path: Path,
    redis_service: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
) -> None:
    """``rate`` readings/s at QoS 1; Mosquitto gets SIGTERM and starts again (persistence
    on) ``restarts`` times, 30 s apart in the long run. Every reading the simulator had
    acknowledged is scored exactly once."""
    with MosquittoProcess(tmp_path / "broker") as broker:
        ingest = stream_settings(broker.url, redis_service.url, redis_keys, unique)
        ingest = ingest.model_copy(update={"worker_id": f"ingest-{unique}"})
        worker = stream_settings(
            broker.url,
            redis_service.url,
            redis_keys,
            unique,
            models_dir=ROOT / "models",
            models=["fault-clf"],
            default_model="fault-clf",
        )
        with running_ingest(ingest), running_worker(worker):
            with raw_load(
                broker.url, rate=rate, devices=30, prefix=f"r{unique}", connections=2
            ) as out:
                for n in range(restarts):
                    time.sleep(4.0 if n == 0 else 30.0)
                    broker.restart()  # SIGTERM, then the same port and persistence directory
                time.sleep(6.0)
            stats = out[0]
            assert stats.reconnects >= restarts
            assert stats.acked >= stats.published, "the raw client resends until acknowledged"
            settle(rclient, redis_keys.predictions, quiet=2.0, timeout=60)
    got = predictions(rclient, redis_keys)
    assert_published_once(got, stats)
    print(
        f"\nbroker-restart run: {stats.published} published and acknowledged, {len(got)} "
        f"stored, {stats.reconnects} reconnects"
    )


def consumers(client: redis.Redis, stream: str, group: str) -> int:
    """Consumers in ``group`` (0 while the stream or the group does not exist yet)."""
    try:
        return len(client.xinfo_consumers(stream, group))
    except redis.ResponseError:
        return 0


def _spawn_worker(settings_env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    env = os.environ | settings_env
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "iotstream", "worker"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.mark.parametrize(
    ("rate", "freezes"),
    [
        pytest.param(500, 1, id="500-per-s-1-freeze"),
        pytest.param(
            2000,
            3,
            id="2000-per-s-3-freezes",
            marks=[pytest.mark.slow, pytest.mark.timeout(900)],
        ),
    ],
)
def test_a_frozen_worker_s_readings_are_claimed_by_the_other_within_the_bound(
    rate: int,
    freezes: int,
    tmp_path: Path,
    mosquitto: Service,
    redis_service: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
) -> None:
    """Two workers (processes) share the staging stream; one is SIGSTOPped for 30 s under
    load. Every reading is scored once, none waited longer than claim_idle_s (5 s) plus a
    claim pass and a batch, and the frozen worker resumes without duplicating anything."""
    claim_idle = 5.0
    bound = claim_idle + 2 * 0.5 + 1.0
    ingest = stream_settings(mosquitto.url, redis_service.url, redis_keys, unique)
    ingest = ingest.model_copy(update={"worker_id": f"ingest-{unique}"})
    env = {
        "WORKER_SOURCE": "stream",
        "WORKER_MQTT_URL": mosquitto.url,
        "WORKER_REDIS_URL": redis_service.url,
        "WORKER_REDIS_PREFIX": redis_keys.prefix,
        "WORKER_SHARE_GROUP": f"g{unique}",
        "WORKER_CLAIM_IDLE_S": str(claim_idle),
        "WORKER_CLAIM_EVERY_S": "0.5",
        "WORKER_MODELS_DIR": str(ROOT / "models"),
        "WORKER_MODELS": "fault-clf",
        "WORKER_DEFAULT_MODEL": "fault-clf",
    }
    procs = [
        _spawn_worker(env | {"WORKER_WORKER_ID": f"w{n}-{unique}"}, tmp_path / f"w{n}.log")
        for n in (1, 2)
    ]
    try:
        with running_ingest(ingest):
            deadline = time.monotonic() + 60
            while consumers(rclient, redis_keys.ingest, f"g{unique}") < 2:
                assert time.monotonic() < deadline, "workers did not join the group"
                time.sleep(0.2)
            with raw_load(mosquitto.url, rate=rate, devices=20, prefix=f"f{unique}") as out:
                for n in range(freezes):  # the two workers take turns being frozen
                    time.sleep(3.0)
                    os.kill(procs[n % 2].pid, signal.SIGSTOP)
                    time.sleep(30.0)
                    os.kill(procs[n % 2].pid, signal.SIGCONT)
                time.sleep(3.0)
            settle(rclient, redis_keys.predictions, quiet=3.0, timeout=60)
    finally:
        for proc in procs:
            os.kill(proc.pid, signal.SIGCONT)
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    stats = out[0]
    got = predictions(rclient, redis_keys)
    assert_published_once(got, stats)
    waits = [(p.hops.published_ts or 0.0) - p.hops.received_ts for p in got]
    assert max(waits) <= bound, f"longest wait {max(waits):.1f}s, bound {bound:.1f}s"
    if freezes == 1:
        claimed = [p for p in got if p.worker_id == f"w2-{unique}"]
        assert len(claimed) > len(got) // 2, "the running worker took over the frozen one's"
    print(
        f"\nfrozen-worker run: {stats.published} published, {len(got)} stored, longest "
        f"wait {max(waits):.2f}s"
    )
