"""compose/model-store-init.sh (compose's one-shot ``models-init``; also how a Kubernetes store
is seeded) against a real S3 endpoint (moto's server, started by the harness): it creates
the bucket, publishes every shipped version and points ``production`` at each model's
newest; run again, it changes nothing, and an alias moved since (a rollout) stays where it
was moved to. The images' build runs it on their model cache folder: that seed is the
cold-start fallback of a process whose store does not answer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.swap_bench import copy_as_version
from iot_models.follow import FollowConfig, ModelFollower
from iot_models.store import open_store
from tests.deploy.support import ROOT
from tests.harness.s3 import s3_store_url

pytestmark = pytest.mark.integration

SCRIPT = ROOT / "compose" / "model-store-init.sh"
SHIPPED = sorted(p.name for p in (ROOT / "models").iterdir() if p.is_dir())


def _seed(store: str, models: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "IOTSTREAM_MODEL_STORE": store,
        **extra,
    }
    return subprocess.run(
        ["sh", str(SCRIPT), str(models)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_seeds_a_fresh_bucket_then_changes_nothing(s3_endpoint: str, tmp_path: Path) -> None:
    url = s3_store_url(s3_endpoint, prefix="fleet")
    first = _seed(url, ROOT / "models")
    assert first.returncode == 0, first.stdout + first.stderr
    store = open_store(url)
    try:
        assert sorted(store.models()) == SHIPPED
        for name in SHIPPED:
            assert store.read_alias(name, "production").alias.version == "1", name
        # A rollout since the seed: version 2 published and production moved to it.
        copy_as_version(tmp_path, "2")
        assert store.publish(tmp_path / "fault-clf" / "2").version == "2"
        run = [sys.executable, "-m", "iotstream", "models", "alias", "fault-clf", "production"]
        moved = subprocess.run([*run, "2", "--store", url], capture_output=True, text=True)
        assert moved.returncode == 0, moved.stderr

        again = _seed(url, ROOT / "models")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "fault-clf 1: already in the store" in again.stdout
        assert "fault-clf@production exists: left as is" in again.stdout
        assert store.read_alias("fault-clf", "production").alias.version == "2"
        assert store.versions("fault-clf") == ["1", "2"]
    finally:
        store.close()


def test_a_real_failure_stops_it(tmp_path: Path) -> None:
    """Anything but "already published" is an error (exit 1), not skipped: here a version
    folder whose file differs from its manifest."""
    broken = copy_as_version(tmp_path / "models", "1")
    next(broken.glob("*.onnx")).write_bytes(b"not the model")
    result = _seed(str(tmp_path / "store"), tmp_path / "models")
    assert result.returncode == 1
    assert "fault-clf" in result.stderr


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_the_seeded_cache_is_the_cold_start_fallback(tmp_path: Path) -> None:
    """As the image build does (compose/Dockerfile: ``IOTSTREAM_CLI="python -m iotstream"``,
    the cache folder as a file store): a worker whose S3 store does not answer, and that
    never reached it, serves the shipped models from the seeded cache instead of failing."""
    cache = tmp_path / "cache"
    seeded = _seed(str(cache), ROOT / "models", IOTSTREAM_CLI=f"{sys.executable} -m iotstream")
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    down = f"s3://models/fleet?endpoint=http://127.0.0.1:{_closed_port()}"
    loaded: dict[str, Any] = {}

    def make_core(models: dict[str, Any], canaries: Any) -> Any:
        loaded.update(models)
        return object()

    follower = ModelFollower(FollowConfig(store=down, cache_dir=cache, timeout=1.0), make_core)
    try:
        follower.start()
        assert follower.from_cache
        assert sorted(loaded) == SHIPPED
        assert {a.version for a in follower.aliases.values()} == {"1"}
    finally:
        follower.close()
