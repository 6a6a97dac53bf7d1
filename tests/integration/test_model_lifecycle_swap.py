"""Workers follow an alias in the model store (real S3 server, Mosquitto, Redis, a gateway
and a WebSocket client): moving the alias under load, and rolling it back, swaps both
workers' models between batches with no reading lost or scored twice; a canary scores
exactly the devices the pure rule picks; a worker starts from its cache while the store is
down and follows it once it answers."""

from __future__ import annotations

import threading
import time
from collections import Counter
from itertools import groupby
from pathlib import Path

import anyio
import pytest
import redis
from prometheus_client import generate_latest

from bench.swap_bench import copy_as_version
from inference_worker.app import running_worker
from inference_worker.service import Worker
from iot_contract import Prediction, Reading, RedisKeys
from iot_models.canary import CanaryRule
from iot_models.store import Alias, Canary, ModelStore, open_store
from iot_models.swap import SwappableCore
from iotstream.cli import main as cli_main
from iotstream.gateway_process import GatewayProcess
from iotstream.localservices import free_port
from tests.harness.pipeline import predictions, publish, reading_messages, wait_for, worker_settings
from tests.harness.processes import CliProcess
from tests.harness.s3 import MotoS3Process, s3_store_url
from tests.harness.services import Service
from tests.integration.gateway.conftest import (
    Received,
    collect,
    gateway_options,
    open_client,
    subscribe,
)

pytestmark = pytest.mark.integration

FEATURES = [2.0, 2.1, 1.2, 3.0, 3.0, 3.1, 1.5, 3.2, 45.0, 60.0, 10.0, 10.1, 9.9, 4.0, 30.0, 2950.0]


@pytest.fixture
def store_url(s3_endpoint: str, tmp_path: Path) -> str:
    """An S3 store holding fault-clf versions 1 and 2, ``production`` at 1."""
    url = s3_store_url(s3_endpoint)
    store = open_store(url)
    store.ensure()
    for version in ("1", "2"):
        store.publish(copy_as_version(tmp_path / "builds", version))
    store.write_alias(Alias(model="fault-clf", alias="production", version="1"), None)
    store.close()
    return url


def move(url: str, version: str, canary: Canary | None = None) -> None:
    store: ModelStore = open_store(url)
    try:
        state = store.read_alias("fault-clf", "production")
        doc = state.alias.model_copy(update={"version": version, "canary": canary})
        store.write_alias(Alias.model_validate(doc.model_dump()), state.token)
    finally:
        store.close()


def follow_settings(
    mosquitto: Service, redis_service: Service, keys: RedisKeys, unique: str, **kw: object
):
    return worker_settings(
        mosquitto.url,
        redis_service.url,
        keys,
        unique,
        default_model="fault-clf",
        models=["fault-clf"],
        model_poll_s=0.2,
        max_batch=32,
        **kw,
    )


def served(worker: Worker) -> str:
    core = worker.core
    assert isinstance(core, SwappableCore)
    return core.current.models["fault-clf"].info.version


def wait_until(condition, timeout: float = 15.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.time()
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def test_moving_the_alias_under_load_swaps_both_workers_and_rolls_back_with_no_loss_or_repeat(
    mosquitto: Service,
    redis_service: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
    store_url: str,
    tmp_path: Path,
) -> None:
    """Steady load from 20 devices through two workers, a gateway and a WebSocket client:
    ``production`` moves to v2 (``iotstream models alias``), then back (``iotstream models
    rollback``). Both workers switch within 10 s each time; Redis and the client each hold
    every reading exactly once; each worker's predictions run v1, then v2, then v1."""
    workers = [
        follow_settings(
            mosquitto,
            redis_service,
            redis_keys,
            f"{unique}{n}",
            share_group=f"g{unique}",
            model_store=store_url,
            model_cache_dir=tmp_path / f"cache{n}",
        )
        for n in (1, 2)
    ]
    devices = [f"d{unique}-{i}" for i in range(20)]
    rounds = 300  # 6,000 readings over ~6 s
    total = rounds * len(devices)
    sent_at: dict[tuple[str, int], float] = {}
    gateway = GatewayProcess(tmp_path / "gw", gateway_options(redis_service.url, redis_keys)).start(
        timeout=30
    )
    client = Received()
    subscribed = threading.Event()

    def watch() -> None:  # a dashboard client for the whole run
        async def main() -> None:
            async with await open_client(gateway.ws_url) as ws:
                await subscribe(ws, client)
                subscribed.set()
                await collect(ws, client, total, within=60)

        anyio.run(main)

    def load() -> None:
        for seq in range(1, rounds + 1):
            batch = [Reading(device_id=d, seq=seq, ts=1.7e9, features=FEATURES) for d in devices]
            now = time.time()
            sent_at.update({(d, seq): now for d in devices})
            publish(mosquitto, reading_messages(batch), client_id=f"p{unique}")
            time.sleep(0.02)

    def models(*args: str) -> None:
        assert cli_main(["models", *args, "--store", store_url]) == 0

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        with running_worker(workers[0]) as (w1, _), running_worker(workers[1]) as (w2, _):
            assert served(w1) == served(w2) == "1"
            watcher.start()
            assert subscribed.wait(15), "the WebSocket client subscribed"
            publisher = threading.Thread(target=load, daemon=True)
            publisher.start()
            time.sleep(1.0)
            moved_at = time.time()
            models("alias", "fault-clf", "production", "2")
            swapped_at = wait_until(lambda: served(w1) == served(w2) == "2", timeout=10)
            time.sleep(1.5)
            rolled_at = time.time()
            models("rollback", "fault-clf", "production")
            back_at = wait_until(lambda: served(w1) == served(w2) == "1", timeout=10)
            publisher.join()
            assert back_at < sent_at[(devices[-1], rounds)], "the rollback happened under load"
            assert wait_for(rclient, redis_keys.predictions, total, timeout=30) == total
            metrics = [generate_latest(w.metrics.registry).decode() for w in (w1, w2)]
        watcher.join(60)
    finally:
        gateway.stop()
    got = predictions(rclient, redis_keys)

    counts = Counter((p.device_id, p.seq) for p in got)
    assert len(counts) == total, "every reading stored"
    assert max(counts.values()) == 1, "none scored twice"
    seen = Counter(client.keys)
    assert len(seen) == total and max(seen.values()) == 1, "the client got each reading once"
    versions = Counter(p.model.version for p in got)
    assert versions["1"] > 0 and versions["2"] > 0, versions
    for worker in workers:
        mine = [p for p in got if p.worker_id == worker.worker_id]  # stream order
        runs = [version for version, _ in groupby(p.model.version for p in mine)]
        assert runs == ["1", "2", "1"], f"{worker.worker_id} switched {runs}"
        first_v2 = next(i for i, p in enumerate(mine) if p.model.version == "2")
        last_v2 = max(i for i, p in enumerate(mine) if p.model.version == "2")
        assert all(p.hops.inferred_ts >= moved_at for p in mine[first_v2:])
        assert all(p.hops.inferred_ts >= rolled_at for p in mine[last_v2 + 1 :])
        # a batch that had read the old core before a swap may end a little after it
        assert all(p.hops.inferred_ts <= swapped_at + 0.5 for p in mine[:first_v2])
        assert all(p.hops.inferred_ts <= back_at + 0.5 for p in mine[: last_v2 + 1])
    during = [p for p in got if swapped_at < sent_at[(p.device_id, p.seq)] < rolled_at]
    late = [p for p in got if sent_at[(p.device_id, p.seq)] > back_at]
    assert during and {p.model.version for p in during} == {"2"}
    assert late and {p.model.version for p in late} == {"1"}
    by_client = Counter(item["model"]["version"] for item in client.items)
    assert by_client == versions, "the client saw the versions Redis holds"
    for text in metrics:
        assert (
            'worker_model_info{model="fault-clf",role="stable",variant="fp32",version="1"} 1.0'
            in text
        )
        assert "worker_model_swaps_total 2.0" in text
    by_version = sum(
        float(line.rsplit(" ", 1)[1])
        for text in metrics
        for line in text.splitlines()
        if line.startswith('worker_predictions_by_version_total{model="fault-clf",version="2"}')
    )
    assert by_version == versions["2"]


def test_a_canary_scores_exactly_the_devices_its_rule_picks(
    mosquitto: Service,
    redis_service: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
    store_url: str,
    tmp_path: Path,
) -> None:
    canary = Canary(version="2", percent=25.0, devices=(f"vip{unique}-*",))
    move(store_url, "1", canary)
    settings = follow_settings(
        mosquitto,
        redis_service,
        redis_keys,
        unique,
        model_store=store_url,
        model_cache_dir=tmp_path / "cache",
    )
    devices = [f"d{unique}-{i}" for i in range(300)] + [f"vip{unique}-{i}" for i in range(5)]
    sent = [
        Reading(device_id=d, seq=s, ts=1.7e9, features=FEATURES) for d in devices for s in (1, 2)
    ]
    rule = CanaryRule("fault-clf", canary.percent, canary.devices)
    expected = Counter("2" if rule.applies(r.device_id) else "1" for r in sent)
    with running_worker(settings) as (worker, _):
        publish(mosquitto, reading_messages(sent), client_id=f"p{unique}")
        assert wait_for(rclient, redis_keys.predictions, len(sent)) == len(sent)
        text = generate_latest(worker.metrics.registry).decode()
    got: list[Prediction] = predictions(rclient, redis_keys)
    assert all(p.model.version == ("2" if rule.applies(p.device_id) else "1") for p in got)
    assert Counter(p.model.version for p in got) == expected
    assert 40 < expected["2"] // 2 - 5 < 110, "about a quarter of 300 devices, plus the vips"
    for version, n in expected.items():
        metric = f'worker_predictions_by_version_total{{model="fault-clf",version="{version}"}}'
        assert f"{metric} {float(n)}" in text
    assert 'role="canary",variant="fp32",version="2"} 1.0' in text


def test_a_worker_starts_from_its_cache_while_the_store_is_down_then_follows_it(
    mosquitto: Service,
    redis_service: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
    store_url: str,
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    first = follow_settings(
        mosquitto, redis_service, redis_keys, unique, model_store=store_url, model_cache_dir=cache
    )
    with running_worker(first) as (worker, _):
        assert served(worker) == "1"
    # the store moves elsewhere and is not up yet: start from the cache
    port = free_port()
    down = s3_store_url(f"http://127.0.0.1:{port}", bucket=f"later{unique}")
    offline = first.model_copy(update={"model_store": down})
    with running_worker(offline) as (worker, _):
        assert served(worker) == "1"
        text = generate_latest(worker.metrics.registry).decode()
        assert "worker_model_from_cache 1.0" in text
        publish(
            mosquitto,
            reading_messages([Reading(device_id=f"d{unique}", seq=1, ts=1.7e9, features=FEATURES)]),
            client_id=f"p{unique}",
        )
        assert wait_for(rclient, redis_keys.predictions, 1) == 1
        # the store comes up (empty, then filled): the worker follows it
        with MotoS3Process(tmp_path / "moto", port=port):
            store = open_store(down)
            store.ensure()
            for version in ("1", "2"):
                store.publish(tmp_path / "builds" / "fault-clf" / version)
            store.write_alias(Alias(model="fault-clf", alias="production", version="2"), None)
            store.close()
            wait_until(lambda: served(worker) == "2", timeout=40)
            text = generate_latest(worker.metrics.registry).decode()
    assert "worker_model_from_cache 0.0" in text
    assert [p.model.version for p in predictions(rclient, redis_keys)] == ["1"]


def test_no_store_and_no_cache_fails_with_what_to_do(
    mosquitto: Service, redis_service: Service, redis_keys: RedisKeys, unique: str, tmp_path: Path
) -> None:
    from iot_models.store import StoreError

    settings = follow_settings(
        mosquitto,
        redis_service,
        redis_keys,
        unique,
        model_store=s3_store_url(f"http://127.0.0.1:{free_port()}"),
        model_cache_dir=tmp_path / "empty",
    )
    with (
        pytest.raises(StoreError, match="start once with the store reachable"),
        running_worker(settings),
    ):
        pass


def test_the_worker_command_follows_the_store_in_its_environment(
    mosquitto: Service,
    redis_service: Service,
    rclient: redis.Redis,
    redis_keys: RedisKeys,
    unique: str,
    store_url: str,
    tmp_path: Path,
) -> None:
    env = {
        "WORKER_WORKER_ID": f"w{unique}",
        "WORKER_MQTT_URL": mosquitto.url,
        "WORKER_REDIS_URL": redis_service.url,
        "WORKER_REDIS_PREFIX": redis_keys.prefix,
        "WORKER_SHARE_GROUP": f"g{unique}",
        "WORKER_MODEL_STORE": store_url,
        "WORKER_MODEL_POLL_S": "0.2",
        "WORKER_MODEL_CACHE_DIR": str(tmp_path / "cache"),
        "WORKER_MODELS": "fault-clf",
    }
    log = tmp_path / "worker.log"

    def send(seq: int) -> None:
        reading = Reading(device_id=f"d{unique}", seq=seq, ts=1.7e9, features=FEATURES)
        publish(mosquitto, reading_messages([reading]), client_id=f"p{unique}")
        assert wait_for(rclient, redis_keys.predictions, seq) == seq

    with CliProcess(["worker"], env, log, "ready: consuming") as worker:
        send(1)
        assert (
            cli_main(["models", "alias", "fault-clf", "production", "2", "--store", store_url]) == 0
        )
        wait_until(lambda: "now serving fault-clf 2 (fp32)" in worker.tail())
        send(2)
        assert worker.terminate() == 0
    assert [p.model.version for p in predictions(rclient, redis_keys)] == ["1", "2"]
    assert "following fault-clf@production in s3://" in log.read_text()
