"""An S3 endpoint for the tests: ``moto_server`` as a real process on a loopback port (or a
server named by ``IOTSTREAM_TEST_S3_ENDPOINT``, e.g. a MinIO). Never skipped: when moto is
not installed the run fails saying how to install it."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import socket
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

from iotstream.localservices import LocalProcess

S3_ENV = "IOTSTREAM_TEST_S3_ENDPOINT"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "iotstream-test",
    "AWS_SECRET_ACCESS_KEY": "iotstream-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""Throwaway credentials: moto accepts any; a MinIO named by S3_ENV needs its own in the
environment, which then win."""


class MotoS3Process(LocalProcess):
    """``python -m moto.server`` on ``127.0.0.1:<port>`` (S3 with conditional writes)."""

    name = "moto-s3"

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        if importlib.util.find_spec("moto") is None:
            raise RuntimeError(
                "moto is not installed: the S3 store tests need its server; run "
                "scripts/bootstrap (installs the test extras) or `pip install 'moto[server]'`"
            )
        super().__init__(workdir, binary=sys.executable, port=port)

    def command(self) -> list[str]:
        """``python -m moto.server -H 127.0.0.1 -p <port>``."""
        return [self.binary, "-m", "moto.server", "-H", self.host, "-p", str(self.port)]

    def _probe(self) -> bool:
        with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), 0.2):
            return True
        return False

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (the S3 endpoint)."""
        return f"http://{self.host}:{self.port}"


@contextlib.contextmanager
def provide_s3(workdir: Path) -> Iterator[str]:
    """Yield an S3 endpoint URL, with credentials in the environment for the test run."""
    missing = {k: v for k, v in CREDENTIALS.items() if k not in os.environ}
    os.environ.update(missing)
    try:
        endpoint = os.environ.get(S3_ENV)
        if endpoint:
            yield endpoint
        else:
            with MotoS3Process(workdir) as server:
                yield server.url
    finally:
        for key in missing:
            os.environ.pop(key, None)


def s3_store_url(endpoint: str, bucket: str | None = None, prefix: str = "models") -> str:
    """A fresh store URL on ``endpoint`` (a bucket per test keeps tests apart)."""
    bucket = bucket or f"t-{uuid.uuid4().hex[:12]}"
    return f"s3://{bucket}/{prefix}?endpoint={endpoint}"
