"""The password tooling and mosquitto_passwd work on the same file, and the broker takes both."""

from __future__ import annotations

import subprocess
import time

import pytest

from iotstream.broker_tools import PasswordFile
from iotstream.localservices import find_binary
from tests.integration.broker.support import Broker, Client, clients

pytestmark = pytest.mark.integration


def test_mosquitto_passwd_and_our_writer_share_a_file(central: Broker) -> None:
    binary = find_binary("mosquitto_passwd")
    assert binary, "mosquitto-clients / mosquitto is not installed"
    path = central.etc / "passwd"
    subprocess.run([binary, "-b", str(path), "dev-c", "from-mosquitto-passwd"], check=True)
    passwords = PasswordFile(path)
    assert passwords.check("dev-c", "from-mosquitto-passwd")
    assert passwords.check("dev-a", central.secrets["dev-a"])  # ours survived its rewrite
    passwords.set("dev-d", "from-iotstream")
    passwords.save()
    central.reload()
    time.sleep(0.5)
    with clients() as made:
        for user, secret in [
            ("dev-a", central.secrets["dev-a"]),
            ("dev-c", "from-mosquitto-passwd"),
            ("dev-d", "from-iotstream"),
        ]:
            made.append(client := Client(f"compat-{user}").login(user, secret))
            assert client.outcome(central.port) == "ok", user
