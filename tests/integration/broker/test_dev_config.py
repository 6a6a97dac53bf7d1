"""broker/dev.conf: convenient (anonymous) and reachable from this machine only."""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from iot_contract import shared_subscription, telemetry_topic
from iotstream.broker_tools import Profile, render_file
from iotstream.localservices import MosquittoProcess, free_port
from tests.integration.broker.support import Client, clients, listening_addresses

pytestmark = pytest.mark.integration


def test_dev_broker_is_anonymous_on_loopback_only(tmp_path: Path) -> None:
    ports = {"mqtt_port": free_port(), "ws_port": free_port()}
    (tmp_path / "data").mkdir()
    config = render_file(
        Profile.DEV,
        {"run_as_user": getpass.getuser(), "data_dir": str(tmp_path / "data"), **ports},
    )
    with (
        MosquittoProcess(tmp_path / "run", config=config, port=ports["mqtt_port"]),
        clients() as made,
    ):
        for port in ports.values():
            assert listening_addresses(port) == {"127.0.0.1"}
        made.append(worker := Client("worker-0"))
        assert worker.outcome(ports["mqtt_port"]) == "ok"
        worker.subscribe(shared_subscription("workers"))
        made.append(browser := Client("browser", transport="websockets"))
        assert browser.outcome(ports["ws_port"]) == "ok"
        assert browser.publish(telemetry_topic("pump-1"), b"r").value == 0  # type: ignore[union-attr]
        assert [m.payload for m in worker.drain()] == [b"r"]
