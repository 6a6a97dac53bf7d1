"""A real Prometheus and blackbox exporter for the tests: Debian's ``prometheus`` and
``prometheus-blackbox-exporter`` binaries on free loopback ports, with configurations the
test gives, and small readers of their HTTP APIs. Never skipped: when a binary is missing
the run fails saying how to install it."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml  # type: ignore[import-untyped]

from iotstream.localservices import LocalProcess, LocalServiceError, find_binary

__all__ = ["BLACKBOX_HINT", "PROMETHEUS_HINT", "BlackboxProcess", "PrometheusProcess", "eventually"]

PROMETHEUS_HINT = (
    "prometheus is missing: `apt-get install prometheus` (Debian's package has prometheus "
    "and promtool; scripts/test's bootstrap installs it when run as root)"
)
BLACKBOX_HINT = (
    "prometheus-blackbox-exporter is missing: `apt-get install prometheus-blackbox-exporter` "
    "(scripts/test's bootstrap installs it when run as root)"
)

T = TypeVar("T")


class _HttpProcess(LocalProcess):
    """A server on ``127.0.0.1:<port>`` that is ready once ``GET <ready_path>`` answers 200."""

    ready_path = "/"

    def _probe(self) -> bool:
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"{self.url}{self.ready_path}", timeout=0.5) as response,
        ):
            return bool(response.status == 200)
        return False

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://{self.host}:{self.port}"


class PrometheusProcess(_HttpProcess):
    """``prometheus`` on ``127.0.0.1:<port>`` with ``config`` (a prometheus.yml as a mapping)
    and the rule files it names, its TSDB in ``workdir/data``.

    Raises:
        LocalServiceError: the binary is not installed.
    """

    name = "prometheus"

    def __init__(
        self, workdir: Path, config: Mapping[str, Any], *, port: int | None = None
    ) -> None:
        binary = find_binary("prometheus")
        if binary is None:
            raise LocalServiceError(PROMETHEUS_HINT)
        super().__init__(workdir, binary=binary, port=port)
        self.config_file = workdir / "prometheus.yml"
        self.config_file.write_text(yaml.safe_dump(dict(config), sort_keys=False))

    def command(self) -> list[str]:
        """The server with its config, TSDB and listen address; no other side effects."""
        return [
            self.binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ]

    ready_path = "/-/ready"

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data`` (raises on an error answer)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=5) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise LocalServiceError(f"prometheus {path}: {body}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's vector: ``[{"metric": {...}, "value": [ts, "v"]}, ...]``."""
        data = self.api("query", query=promql)
        result: list[dict[str, Any]] = data["result"]
        return result

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets with their ``health`` and ``labels``."""
        active: list[dict[str, Any]] = self.api("targets")["activeTargets"]
        return active

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts the rule manager holds now (pending and firing)."""
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts


class BlackboxProcess(_HttpProcess):
    """``prometheus-blackbox-exporter`` on ``127.0.0.1:<port>`` with a modules file.

    Raises:
        LocalServiceError: the binary is not installed.
    """

    name = "blackbox"

    def __init__(self, workdir: Path, config_file: Path, *, port: int | None = None) -> None:
        binary = find_binary("prometheus-blackbox-exporter")
        if binary is None:
            raise LocalServiceError(BLACKBOX_HINT)
        super().__init__(workdir, binary=binary, port=port)
        self.config_file = config_file

    def command(self) -> list[str]:
        """The exporter with the modules file on the loopback port."""
        return [
            self.binary,
            f"--config.file={self.config_file}",
            f"--web.listen-address={self.host}:{self.port}",
        ]

    ready_path = "/-/healthy"

    def probe(self, module: str, target: str) -> float:
        """Run ``module`` against ``target`` once and return ``probe_success`` (1.0 or 0.0)."""
        query = urllib.parse.urlencode({"module": module, "target": target})
        with urllib.request.urlopen(f"{self.url}/probe?{query}", timeout=10) as response:
            text = response.read().decode()
        for line in text.splitlines():
            if line.startswith("probe_success "):
                return float(line.split()[1])
        raise LocalServiceError(f"no probe_success in the answer:\n{text}")


def eventually(check: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)
