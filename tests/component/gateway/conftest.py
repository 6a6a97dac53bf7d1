"""A gateway app (in-process, Starlette TestClient) on the session's real Redis."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from gateway import create_app
from iot_contract import RedisKeys
from tests.component.gateway.support import Feeder, make_settings
from tests.harness.services import Service

with warnings.catch_warnings():
    # Starlette asks for httpx2 instead of httpx; the API the tests use is the same.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

__all__ = ["TestClient"]


@pytest.fixture
def feeder(redis_service: Service, redis_keys: RedisKeys) -> Iterator[Feeder]:
    """Writes predictions into this test's stream the way a worker does."""
    feeder = Feeder(redis_service.url, redis_keys)
    yield feeder
    feeder.close()


@pytest.fixture
def make_client(
    redis_service: Service, redis_keys: RedisKeys
) -> Iterator[Callable[..., TestClient]]:
    """Builds a started TestClient for a gateway with settings overrides."""
    clients: list[TestClient] = []

    def build(**overrides: Any) -> TestClient:
        app = create_app(make_settings(redis_service.url, redis_keys, **overrides))
        client = TestClient(app, base_url="http://gw.test")
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient], feeder: Feeder) -> TestClient:
    """A gateway with the default test settings (the stream exists: the feeder made it)."""
    return make_client()
