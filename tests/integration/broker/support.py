"""Start real Mosquitto brokers from the files in broker/, and small paho helpers for tests."""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import os
import queue
import signal
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from iotstream.broker_tools import PasswordFile, Profile, render_file
from iotstream.broker_tools.accounts import add_devices, add_service
from iotstream.broker_tools.certs import Issued, create_ca, issue_client, issue_server
from iotstream.broker_tools.dynsec import DYNSEC_PLUGIN, DynsecFile
from iotstream.localservices import MosquittoProcess, free_port

DEVICES = ("dev-a", "dev-b")
SERVICES = ("worker", "admin", "bridge-site1")
LIFETIME = dt.timedelta(hours=2)


@dataclass
class Pki:
    """Test certificates: a CA, a server cert for localhost, client certs, and bad ones."""

    folder: Path
    ca: Issued

    def path(self, name: str, ext: str = "crt") -> str:
        return str(self.folder / f"{name}.{ext}")

    def client(self, name: str) -> tuple[str, str, str]:
        """(ca, cert, key) paths for paho's tls_set."""
        return self.path("ca"), self.path(name), self.path(name, "key")


def make_pki(folder: Path) -> Pki:
    """CA + server + clients for dev-a, bridge-site1; an expired dev-a; a foreign-CA dev-a."""
    ca = create_ca("iotstream test CA", LIFETIME)
    ca.write(folder, "ca")
    issue_server(ca, ["localhost", "127.0.0.1"], LIFETIME).write(folder, "server")
    for name in ("dev-a", "bridge-site1"):
        issue_client(ca, name, LIFETIME).write(folder, name)
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    issue_client(ca, "dev-a", dt.timedelta(days=1), not_before=past).write(folder, "dev-a-expired")
    foreign = create_ca("someone else's CA", LIFETIME)
    issue_client(foreign, "dev-a", LIFETIME).write(folder, "dev-a-foreign")
    return Pki(folder, ca)


@dataclass
class Broker:
    """A running broker started from a broker/ template, with the secrets of its users."""

    process: MosquittoProcess
    ports: dict[str, int]
    secrets: dict[str, str] = field(default_factory=dict)
    etc: Path = Path()

    @property
    def port(self) -> int:
        return self.process.port

    def reload(self) -> None:
        """SIGHUP, once the broker answers MQTT (a SIGHUP during start-up kills it)."""
        probe = Client(f"probe-{time.monotonic_ns()}")
        try:
            assert probe.outcome(self.port).startswith(("ok", "refused")), "broker not answering"
        finally:
            probe.close()
        assert self.process.pid is not None
        os.kill(self.process.pid, signal.SIGHUP)


def write_accounts(etc: Path) -> dict[str, str]:
    """A password file and a dynamic security file made by the tooling; returns the secrets."""
    etc.mkdir(parents=True, exist_ok=True)
    passwords = PasswordFile(etc / "passwd")
    rights = DynsecFile(etc / "dynamic-security.json")
    secrets = add_devices(passwords, DEVICES, rights)
    secrets |= {name: add_service(passwords, name, rights) for name in SERVICES}
    passwords.save()
    rights.save()
    return secrets


@contextlib.contextmanager
def run_broker(
    profile: Profile,
    root: Path,
    values: dict[str, str | int],
    secrets: dict[str, str],
    extra_config: str = "",
) -> Iterator[Broker]:
    """Render ``profile`` with free loopback ports and paths under ``root``; run it.

    ``extra_config`` is appended to the rendered file (to try an alternative setting).
    """
    plugin = Path(str(values.get("dynsec_plugin", DYNSEC_PLUGIN)))
    assert profile is Profile.DEV or plugin.exists(), (
        f"{plugin} missing: the dynamic security plugin ships in Debian's mosquitto package "
        "(scripts/bootstrap installs it: apt-get install mosquitto)"
    )
    ports = {name: free_port() for name in ("mqtt_port", "tls_port", "ws_port")}
    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    base: dict[str, str | int] = {
        "run_as_user": getpass.getuser(),
        "data_dir": str(data),
        "password_file": str(root / "etc" / "passwd"),
        "dynsec_file": str(root / "etc" / "dynamic-security.json"),
        "mqtt_bind": "127.0.0.1",
        "tls_bind": "127.0.0.1",
        "ws_bind": "127.0.0.1",
        **ports,
    }
    config = render_file(profile, base | values) + extra_config
    process = MosquittoProcess(root / "run", config=config, port=ports["mqtt_port"])
    with process:
        yield Broker(process, ports, secrets, root / "etc")


def production_values(pki: Pki, **extra: str | int) -> dict[str, str | int]:
    """Template values pointing the TLS listener at the test PKI."""
    return {
        "cafile": pki.path("ca"),
        "certfile": pki.path("server"),
        "keyfile": pki.path("server", "key"),
        **extra,
    }


class Client:
    """A paho v5 client whose callbacks feed queues the test can wait on."""

    def __init__(
        self,
        client_id: str,
        *,
        clean_start: bool = True,
        protocol: MQTTProtocolVersion = MQTTProtocolVersion.MQTTv5,
        **kwargs: Any,
    ) -> None:
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **kwargs
        )
        self.clean_start: bool | Literal[3] = (
            clean_start
            if protocol == MQTTProtocolVersion.MQTTv5
            else mqtt.MQTT_CLEAN_START_FIRST_ONLY
        )
        self.connack_properties: Any = None
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.subscriptions: list[str] = []
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = lambda _c, _u, _f, rc, _p: self.events.put(("disconnect", rc))
        self.paho.on_subscribe = lambda _c, _u, _m, rcs, _p: self.events.put(("suback", rcs))
        self.paho.on_publish = lambda _c, _u, mid, rc, _p: self.events.put(("puback", (mid, rc)))
        self.paho.on_message = lambda _c, _u, msg: self.messages.put(msg)

    def _on_connect(self, _c: Any, _u: Any, flags: Any, rc: ReasonCode, props: Any) -> None:
        # Subscribe on every connect, even with a session present: on 2.0.11 a shared
        # subscription restored from persistence matches nothing until it is renewed.
        for topic in self.subscriptions:
            self.paho.subscribe(topic, 1)
        self.events.put(("connect", (rc, flags, props)))

    def keep_subscribed(self, topic: str) -> None:
        """Subscribe now and again on every reconnect (what a worker must do)."""
        self.subscriptions.append(topic)
        self.subscribe(topic)

    def login(self, user: str, password: str | None) -> Client:
        self.paho.username_pw_set(user, password)
        return self

    def tls(self, ca: str, cert: str | None = None, key: str | None = None) -> Client:
        self.paho.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
        return self

    def connect(self, port: int, *, session_expiry: int | None = None) -> None:
        """Connect and start the network loop (the result arrives as an event)."""
        props = None
        if session_expiry is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_expiry
        self.paho.connect("127.0.0.1", port, clean_start=self.clean_start, properties=props)
        self.paho.loop_start()

    def wait(self, kind: str, timeout: float = 5.0) -> Any:
        """The next event of ``kind``; other events are dropped. TimeoutError when none."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(queue.Empty):
                got, value = self.events.get(timeout=left)
                if got == kind:
                    return value
        raise TimeoutError(f"no {kind} in {timeout}s")

    def outcome(self, port: int, timeout: float = 5.0) -> str:
        """Connect and say how it went: 'ok', or why not (reason code or error)."""
        try:
            self.connect(port)
        except OSError as exc:
            return f"error: {exc!r}"
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                got, value = self.events.get(timeout=left)
            except queue.Empty:
                break
            if got == "connect":
                rc: ReasonCode = value[0]
                self.connack_properties = value[2]
                return "ok" if not rc.is_failure else f"refused: {rc}"
            if got == "disconnect":
                return f"disconnected: {value}"
        return "no answer"

    def subscribe(self, topic: str, qos: int = 1) -> list[ReasonCode]:
        self.paho.subscribe(topic, qos)
        result: list[ReasonCode] = self.wait("suback")
        return result

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, properties: Properties | None = None
    ) -> ReasonCode | None:
        """Publish; for QoS 1 wait for the PUBACK and return its reason code."""
        info = self.paho.publish(topic, payload, qos, properties=properties)
        if qos == 0:
            return None
        mid, rc = self.wait("puback")
        assert mid == info.mid
        result: ReasonCode = rc
        return result

    def drain(self, quiet: float = 0.5) -> list[mqtt.MQTTMessage]:
        """Messages that arrive until none has come for ``quiet`` seconds."""
        got = []
        with contextlib.suppress(queue.Empty):
            while True:
                got.append(self.messages.get(timeout=quiet))
        return got

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()
        # paho closes its wake-up socket pair only in __del__, which a reference cycle through
        # the callbacks delays past the test (a ResourceWarning, an error under -W error).
        self.paho._reset_sockets()


@contextlib.contextmanager
def clients() -> Iterator[list[Client]]:
    """Collects clients made in a test and closes them all at the end."""
    made: list[Client] = []
    try:
        yield made
    finally:
        for client in made:
            client.close()


def listening_addresses(port: int, timeout: float = 3.0) -> set[str]:
    """IPv4/IPv6 addresses with a LISTEN socket on ``port`` (waits up to ``timeout`` for one)."""
    deadline = time.monotonic() + timeout
    while not (found := _listening(port)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _listening(port: int) -> set[str]:
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if int(port_hex, 16) == port and fields[3] == "0A":
                raw = bytes.fromhex(address)
                # /proc prints each 32-bit word in host (little-endian) order
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
                found.add(socket.inet_ntop(family, words))
    return found
