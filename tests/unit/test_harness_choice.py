"""How the harness picks where a service comes from (it never skips)."""

from __future__ import annotations

import pytest

from tests.harness.services import HarnessError, Source, choose_source


def test_environment_url_wins() -> None:
    assert choose_source("mqtt://h:1", lambda: True, "/usr/sbin/mosquitto", "x") is Source.ENV


def test_docker_before_local_binary() -> None:
    assert choose_source(None, lambda: True, "/bin/x", "x") is Source.TESTCONTAINERS


def test_local_binary_when_no_docker() -> None:
    assert choose_source(None, lambda: False, "/bin/x", "x") is Source.LOCAL


def test_nothing_available_fails_with_install_advice() -> None:
    with pytest.raises(HarnessError, match="apt-get install"):
        choose_source(None, lambda: False, None, "mosquitto")
