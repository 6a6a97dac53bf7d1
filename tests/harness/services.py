"""Where the tests' Mosquitto and Redis come from.

In order: a URL from the environment (``IOTSTREAM_TEST_MQTT_URL`` /
``IOTSTREAM_TEST_REDIS_URL``); a testcontainers container when a Docker engine answers;
the ``mosquitto`` / ``redis-server`` binaries started on free loopback ports. When none is
possible the run fails with a message saying what to install. It never skips.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from iotstream.localservices import (
    INSTALL_HINT,
    LocalProcess,
    MosquittoProcess,
    RedisProcess,
    find_binary,
)

MQTT_ENV = "IOTSTREAM_TEST_MQTT_URL"
REDIS_ENV = "IOTSTREAM_TEST_REDIS_URL"
MOSQUITTO_IMAGE = "eclipse-mosquitto:2.0.21"
REDIS_IMAGE = "redis:7.4.2"


class HarnessError(RuntimeError):
    """No way to provide a required service."""


class Source(StrEnum):
    """Where a service comes from."""

    ENV = "env"
    TESTCONTAINERS = "testcontainers"
    LOCAL = "local"


@dataclass(frozen=True)
class Service:
    """A running service the tests may use.

    Attributes:
        url: ``mqtt://host:port`` or ``redis://host:port/0``.
        source: how it was provided.
        process: the local process when ``source`` is LOCAL (tests may restart it), else None.
    """

    url: str
    source: Source
    process: LocalProcess | None = None

    @property
    def host(self) -> str:
        """Host part of the URL."""
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        """Port part of the URL."""
        port = urlsplit(self.url).port
        if port is None:
            raise HarnessError(f"{self.url} has no port")
        return port


def docker_reachable(timeout: float = 2.0) -> bool:
    """True when a Docker engine answers ``GET /_ping`` on ``$DOCKER_HOST`` (unix or tcp)."""
    target = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    parts = urlsplit(target)
    try:
        if parts.scheme == "unix":
            if not Path(parts.path).exists():
                return False
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = parts.path
        elif parts.scheme == "tcp" and parts.hostname:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (parts.hostname, parts.port or 2375)
        else:
            return False
        with sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return sock.recv(64).startswith((b"HTTP/1.0 200", b"HTTP/1.1 200"))
    except OSError:
        return False


def choose_source(
    env_url: str | None, docker_ok: Callable[[], bool], binary: str | None, what: str
) -> Source:
    """Pick where ``what`` comes from, or raise HarnessError saying how to fix it."""
    if env_url:
        return Source.ENV
    if docker_ok():
        return Source.TESTCONTAINERS
    if binary:
        return Source.LOCAL
    raise HarnessError(
        f"no {what} for the tests: {MQTT_ENV if what == 'mosquitto' else REDIS_ENV} is not set, "
        f"no Docker engine answers, and the {what} binary is not installed; {INSTALL_HINT}"
    )


@contextlib.contextmanager
def provide_mosquitto(workdir: Path) -> Iterator[Service]:
    """Yield a running Mosquitto (see module docstring for the order tried)."""
    env_url = os.environ.get(MQTT_ENV)
    source = choose_source(env_url, docker_reachable, find_binary("mosquitto"), "mosquitto")
    if source is Source.ENV and env_url:
        yield Service(env_url, source)
    elif source is Source.TESTCONTAINERS:
        from testcontainers.community.mqtt import MosquittoContainer

        config = workdir / "tc-mosquitto.conf"
        config.write_text("listener 1883\nallow_anonymous true\nset_tcp_nodelay true\n")
        with MosquittoContainer(MOSQUITTO_IMAGE).start(configfile=str(config)) as container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(MosquittoContainer.MQTT_PORT)
            yield Service(f"mqtt://{host}:{port}", source)
    else:
        with MosquittoProcess(workdir / "mosquitto") as broker:
            yield Service(broker.url, source, broker)


@contextlib.contextmanager
def provide_redis(workdir: Path) -> Iterator[Service]:
    """Yield a running Redis (see module docstring for the order tried)."""
    env_url = os.environ.get(REDIS_ENV)
    source = choose_source(env_url, docker_reachable, find_binary("redis-server"), "redis-server")
    if source is Source.ENV and env_url:
        yield Service(env_url, source)
    elif source is Source.TESTCONTAINERS:
        from testcontainers.community.redis import RedisContainer

        with RedisContainer(REDIS_IMAGE) as container:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(6379)
            yield Service(f"redis://{host}:{port}/0", source)
    else:
        with RedisProcess(workdir / "redis") as server:
            yield Service(server.url, source, server)
