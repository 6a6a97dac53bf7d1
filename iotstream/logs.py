"""Logging set-up shared by every service entry point."""

from __future__ import annotations

import logging

__all__ = ["configure_logging"]


def configure_logging(level: str = "INFO", name: str | None = None) -> None:
    """One line per event: time, level, service, logger, message."""
    tag = f"{name} " if name else ""
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s %(levelname)-7s {tag}%(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
