"""Logging set-up shared by every service entry point.

Both formats hide the password of any ``scheme://user:password@host`` URL in what they
write: the deployments put Redis's password in ``WORKER_REDIS_URL`` (compose, k8s), and
the worker logs its Redis and broker URLs at start and in connection errors.
"""

from __future__ import annotations

import logging
import re
from typing import Final, Literal

import orjson

__all__ = ["JsonFormatter", "LogFormat", "TextFormatter", "configure_logging", "redact_credentials"]

LogFormat = Literal["text", "json"]

_URL_PASSWORD: Final = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*:)[^\s/@]+@")


def redact_credentials(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` URL in it shown as
    ``***`` (``redis://:s3cret@redis:6379/0`` becomes ``redis://:***@redis:6379/0``)."""
    return _URL_PASSWORD.sub(r"\1***@", text)


class TextFormatter(logging.Formatter):
    """A :class:`logging.Formatter` whose lines (traceback included) pass through
    :func:`redact_credentials`."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as text, URL passwords hidden."""
        return redact_credentials(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``service``, ``logger``, ``msg``
    (plus ``exc`` with the traceback), for log collectors; URL passwords hidden."""

    def __init__(self, service: str | None) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as JSON."""
        entry: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": redact_credentials(record.getMessage()),
        }
        if record.exc_info:
            entry["exc"] = redact_credentials(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


def configure_logging(
    level: str = "INFO", name: str | None = None, fmt: LogFormat = "text"
) -> None:
    """Text: one line per event (time, level, service, logger, message). JSON: see
    :class:`JsonFormatter`."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter(name))
    else:
        tag = f"{name} " if name else ""
        handler.setFormatter(
            TextFormatter(
                f"%(asctime)s %(levelname)-7s {tag}%(name)s: %(message)s", datefmt="%H:%M:%S"
            )
        )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
