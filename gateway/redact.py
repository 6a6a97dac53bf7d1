"""Tokens out of the logs, whoever writes the line: uvicorn's access and error loggers write
the request target verbatim (``/ws?access_token=...``), and at DEBUG the WebSocket library logs
the upgrade headers (``sec-websocket-protocol: bearer, <token>``) and the frames
(``{"type":"auth","token":...}``).

* Query strings: every value is replaced by ``[redacted]`` except the few harmless
  parameters the REST API defines (:data:`SAFE_PARAMS`); a parameter without ``=`` is
  replaced whole.
* Bearer credentials (``Bearer <x>``, ``bearer, <x>``), ``"token": "<x>"`` fields, and
  anything shaped like a JWT (``eyJ....``) are replaced too.
"""

from __future__ import annotations

import logging
import re
from typing import Final

__all__ = ["REDACTED", "SAFE_PARAMS", "QueryRedactionFilter", "install_redaction", "redact"]

REDACTED: Final = "[redacted]"
SAFE_PARAMS: Final = frozenset({"device", "since", "limit"})
"""Parameters of ``GET /v1/predictions`` kept in logs (they help debugging, carry no secret)."""
_PATH_QUERY: Final = re.compile(r"(/[^\s?\"'<>]*)\?([^\s\"'<>#]*)")
_CREDENTIALS: Final = (
    re.compile(r"(?i)(\bbearer\s*,?\s*)[^\s,\"']+"),
    re.compile(r"(\"token\"\s*:\s*\")[^\"']*"),
    re.compile(r"()\beyJ[\w-]*\.[\w.-]*"),
)
_LOGGERS: Final = ("uvicorn.access", "uvicorn.error", "uvicorn.asgi", "gateway")


def _redact_query(query: str) -> str:
    parts: list[str] = []
    for part in query.split("&"):
        name, sep, _ = part.partition("=")
        if not sep:
            parts.append(REDACTED if part else part)
        elif name in SAFE_PARAMS:
            parts.append(part)
        else:
            parts.append(f"{name}={REDACTED}")
    return "&".join(parts)


def redact(text: str) -> str:
    """``text`` with query strings and credentials redacted."""
    if "?" in text:
        text = _PATH_QUERY.sub(lambda m: f"{m.group(1)}?{_redact_query(m.group(2))}", text)
    for pattern in _CREDENTIALS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return text


def _redact_arg(arg: object) -> object:
    if isinstance(arg, int | float | bool) or arg is None:
        return arg
    # Objects (the WebSocket library logs Frame objects) are rendered here, where they can
    # still be redacted, instead of in the formatter.
    return redact(arg if isinstance(arg, str) else str(arg))


class QueryRedactionFilter(logging.Filter):
    """Rewrites a record's message and arguments with :func:`redact` (the arguments one by
    one, so formatters that read ``record.args``, like uvicorn's, still work)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact ``record`` in place; never drops it."""
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, tuple):
            record.args = tuple(_redact_arg(a) for a in args)
        elif isinstance(args, dict):
            record.args = {k: _redact_arg(v) for k, v in args.items()}
        return True


_FILTER: Final = QueryRedactionFilter()


def install_redaction() -> None:
    """Add the filter to uvicorn's and the gateway's loggers and to every handler of the
    root logger (records of child loggers only pass through handlers). Idempotent; call it
    after logging is configured."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    for handler in logging.getLogger().handlers:
        if _FILTER not in handler.filters:
            handler.addFilter(_FILTER)
