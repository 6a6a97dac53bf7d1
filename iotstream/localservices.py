"""Real Mosquitto and Redis processes on free loopback ports, for tests, benchmarks and demos.

Each process lives in its own work directory (config, logs, persistence) and keeps its port
across :meth:`LocalProcess.restart`, so a test can stop or ``kill -9`` a broker or Redis and
bring the same one back.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Final, Self

__all__ = [
    "INSTALL_HINT",
    "LocalProcess",
    "LocalServiceError",
    "MosquittoProcess",
    "RedisProcess",
    "find_binary",
    "free_port",
    "require_binary",
]

INSTALL_HINT: Final = (
    "install them with `sudo apt-get install -y mosquitto mosquitto-clients redis-server` "
    "(scripts/bootstrap does this when run as root), or point IOTSTREAM_TEST_MQTT_URL / "
    "IOTSTREAM_TEST_REDIS_URL at running services"
)


class LocalServiceError(RuntimeError):
    """A local service could not be found, started or reached."""


def find_binary(name: str) -> str | None:
    """Path of ``name`` on PATH or in /usr/sbin (where Debian puts mosquitto), else None."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/usr/bin"):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def require_binary(name: str, given: str | None = None) -> str:
    """``given`` if set, else ``name`` found by :func:`find_binary`.

    Raises:
        LocalServiceError: neither (the message says how to install it).
    """
    found = given or find_binary(name)
    if not found:
        raise LocalServiceError(f"{name} is not installed; {INSTALL_HINT}")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class LocalProcess:
    """A server process started from a binary; a context manager that stops it on exit.

    Subclasses provide :meth:`command` and :meth:`_probe`.
    """

    name = "service"
    host: Final = "127.0.0.1"

    def __init__(self, workdir: Path, *, binary: str, port: int | None = None) -> None:
        self.workdir = workdir
        self.binary = binary
        self.port = port or free_port()
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = workdir / f"{self.name}.log"
        workdir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        """The argv that starts the server."""
        raise NotImplementedError

    def _probe(self) -> bool:
        """True when the server answers on its port."""
        raise NotImplementedError

    @property
    def url(self) -> str:
        """Connection URL of the service."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The process id while it runs."""
        return self._proc.pid if self.running and self._proc else None

    def start(self, timeout: float = 15.0) -> Self:
        """Start the process and wait until it answers; raise LocalServiceError otherwise."""
        if self.running:
            return self
        log = self._log.open("ab")
        try:
            self._proc = subprocess.Popen(  # noqa: S603 - argv built from fixed parts
                self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise LocalServiceError(
                    f"{self.name} exited with code {self._proc.returncode} at start; "
                    f"log {self._log}:\n{self.log_tail()}"
                )
            if self._probe():
                return self
            time.sleep(0.02)
        self.kill()
        raise LocalServiceError(f"{self.name} did not answer on port {self.port} in {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait (SIGKILL after ``timeout``)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: no chance to flush anything (a crash)."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._proc = None

    def restart(self, *, hard: bool = False) -> Self:
        """Stop (or kill, if ``hard``) and start again on the same port and directory."""
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the process's log."""
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _tcp_open(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 0.2):
            return True
        return False


class MosquittoProcess(LocalProcess):
    """A Mosquitto broker.

    By default it runs a test configuration: one plain listener on loopback, anonymous
    access, MQTT v5 and shared subscriptions (always on in Mosquitto 2), TCP_NODELAY,
    persistence to its work directory. ``config`` replaces that whole configuration;
    ``{port}`` and ``{workdir}`` in it are filled in.
    """

    name = "mosquitto"

    def __init__(
        self,
        workdir: Path,
        *,
        config: str | None = None,
        port: int | None = None,
        binary: str | None = None,
    ) -> None:
        super().__init__(workdir, binary=require_binary("mosquitto", binary), port=port)
        self.config_path = workdir / "mosquitto.conf"
        self._config = config if config is not None else self.default_config()

    @staticmethod
    def default_config() -> str:
        """The test broker's configuration template."""
        return "\n".join(
            [
                "listener {port} 127.0.0.1",
                "allow_anonymous true",
                "set_tcp_nodelay true",
                "persistence true",
                "persistence_location {workdir}/",
                "autosave_interval 1",
                "max_queued_messages 100000",
                "max_inflight_messages 100",
                "log_type error",
                "log_type warning",
                "log_type notice",
                f"user {getpass.getuser()}",
                "",
            ]
        )

    def command(self) -> list[str]:
        """``mosquitto -c <workdir>/mosquitto.conf``."""
        self.config_path.write_text(
            self._config.replace("{port}", str(self.port)).replace("{workdir}", str(self.workdir))
        )
        return [self.binary, "-c", str(self.config_path)]

    def _probe(self) -> bool:
        return self._tcp_open()

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:<port>``."""
        return f"mqtt://{self.host}:{self.port}"


class RedisProcess(LocalProcess):
    """A Redis server; ``appendonly`` turns on AOF (fsync every second) for crash tests."""

    name = "redis"

    def __init__(
        self,
        workdir: Path,
        *,
        appendonly: bool = False,
        port: int | None = None,
        binary: str | None = None,
    ) -> None:
        super().__init__(workdir, binary=require_binary("redis-server", binary), port=port)
        self.appendonly = appendonly

    def command(self) -> list[str]:
        """``redis-server`` with loopback bind, no RDB snapshots, optional AOF."""
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", self.host,
            "--dir", str(self.workdir),
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--daemonize", "no",
        ]  # fmt: skip

    def _probe(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection((self.host, self.port), 0.2) as s,
        ):
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
        return False

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://{self.host}:{self.port}/0"
