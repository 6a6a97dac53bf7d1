"""Fixtures shared by every test tier."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from iot_contract import RedisKeys
from tests.harness.services import HarnessError, Service, provide_mosquitto, provide_redis


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A real Mosquitto shared by the session (anonymous, MQTT v5, shared subscriptions)."""
    try:
        with provide_mosquitto(tmp_path_factory.mktemp("mosquitto")) as service:
            yield service
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
def redis_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A real Redis shared by the session; tests keep apart with :func:`redis_keys`."""
    try:
        with provide_redis(tmp_path_factory.mktemp("redis")) as service:
            yield service
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def unique() -> str:
    """A short name unique to this test, for device ids, key prefixes and client ids."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def redis_keys(unique: str) -> RedisKeys:
    """Redis key names under a prefix no other test uses."""
    return RedisKeys(prefix=f"t{unique}")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A scratch directory for this test."""
    return tmp_path


@pytest.fixture
def rclient(redis_service: Service) -> Iterator[redis.Redis]:
    """A Redis client on the shared test Redis (closed after the test)."""
    client = redis.Redis.from_url(redis_service.url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3 endpoint (moto's server on loopback) shared by the session; tests keep
    apart with a bucket each (:func:`tests.harness.s3.s3_store_url`)."""
    from tests.harness.s3 import provide_s3

    try:
        with provide_s3(tmp_path_factory.mktemp("s3")) as endpoint:
            yield endpoint
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
