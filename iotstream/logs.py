"""Logging set-up shared by every service entry point."""

from __future__ import annotations

import logging
from typing import Literal

import orjson

__all__ = ["JsonFormatter", "LogFormat", "configure_logging"]

LogFormat = Literal["text", "json"]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``service``, ``logger``, ``msg``
    (plus ``exc`` with the traceback), for log collectors."""

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
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
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
            logging.Formatter(
                f"%(asctime)s %(levelname)-7s {tag}%(name)s: %(message)s", datefmt="%H:%M:%S"
            )
        )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
