"""A gateway in its own process on a fixed loopback port, for tests, benchmarks and demos
(same start/stop/restart behaviour as :mod:`iotstream.localservices`)."""

from __future__ import annotations

import contextlib
import http.client
import sys
from collections.abc import Mapping
from pathlib import Path

from iotstream.localservices import LocalProcess

__all__ = ["GatewayProcess"]


class GatewayProcess(LocalProcess):
    """``iotstream gateway`` as a child process.

    Args:
        workdir: log and working directory.
        options: gateway settings by field name (``{"redis_url": ..., "dev_mode": True}``);
            the port is chosen here and kept across restarts.
        port: a fixed port, else a free one.
    """

    name = "gateway"

    def __init__(
        self, workdir: Path, options: Mapping[str, object], *, port: int | None = None
    ) -> None:
        super().__init__(workdir, binary=sys.executable, port=port)
        self.options = dict(options)

    def command(self) -> list[str]:
        """``python -m iotstream gateway --host 127.0.0.1 --port N --<option> <value> ...``."""
        argv = [self.binary, "-m", "iotstream", "gateway", "--host", self.host]
        argv += ["--port", str(self.port)]
        for name, value in self.options.items():
            flag = "--" + name.replace("_", "-")
            if isinstance(value, bool):
                argv.append(flag if value else "--no-" + flag[2:])
            elif isinstance(value, list | tuple):
                argv += [flag, ",".join(map(str, value))]
            else:
                argv += [flag, str(value)]
        return argv

    def _probe(self) -> bool:
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection(self.host, self.port, timeout=0.5)
            try:
                conn.request("GET", "/healthz")
                return conn.getresponse().status == 200
            finally:
                conn.close()
        return False

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT/ws``."""
        return f"ws://{self.host}:{self.port}/ws"
