"""Fixtures: a test PKI and a production broker started from broker/production.conf."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotstream.broker_tools import Profile
from tests.integration.broker.support import (
    Broker,
    Pki,
    make_pki,
    production_values,
    run_broker,
    write_accounts,
)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """CA, server and client certificates (valid, expired, foreign CA)."""
    return make_pki(tmp_path_factory.mktemp("pki"))


@contextlib.contextmanager
def start_production(root: Path, pki: Pki, **values: str | int) -> Iterator[Broker]:
    """Run broker/production.conf with accounts made by the tooling under ``root``."""
    secrets = write_accounts(root / "etc")
    with run_broker(Profile.PRODUCTION, root, production_values(pki, **values), secrets) as b:
        yield b


@pytest.fixture(scope="module")
def central(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Broker]:
    """broker/production.conf + broker/acl, on free loopback ports, shared by a module."""
    with start_production(tmp_path_factory.mktemp("central"), pki) as broker:
        yield broker
