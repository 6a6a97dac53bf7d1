"""Query strings are redacted from log records (messages and arguments)."""

from __future__ import annotations

import logging

import pytest

from gateway.redact import REDACTED, QueryRedactionFilter, redact

SECRET = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.c2ln"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"/ws?access_token={SECRET}", f"/ws?access_token={REDACTED}"),
        (f"/ws?{SECRET}", f"/ws?{REDACTED}"),
        (
            f"GET /v1/predictions?device=pump-1&token={SECRET}&limit=5 HTTP/1.1",
            f"GET /v1/predictions?device=pump-1&token={REDACTED}&limit=5 HTTP/1.1",
        ),
        (
            f'"WebSocket /ws?a=1&access_token={SECRET}" [accepted]',
            f'"WebSocket /ws?a={REDACTED}&access_token={REDACTED}" [accepted]',
        ),
        (f"http://h:1/v1/devices?jwt={SECRET}", f"http://h:1/v1/devices?jwt={REDACTED}"),
        ("no query here? fine", "no query here? fine"),
        (
            f"< sec-websocket-protocol: bearer, {SECRET}",
            f"< sec-websocket-protocol: bearer, {REDACTED}",
        ),
        ("> Sec-WebSocket-Protocol: bearer", "> Sec-WebSocket-Protocol: bearer"),
        (f"authorization: Bearer {SECRET}", f"authorization: Bearer {REDACTED}"),
        (
            f"""< TEXT '{{"type":"auth","token":"{SECRET[:30]}...' [300 bytes]""",
            f"""< TEXT '{{"type":"auth","token":"{REDACTED}' [300 bytes]""",
        ),
        (f"token was {SECRET} (bad)", f"token was {REDACTED} (bad)"),
        ("/healthz", "/healthz"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_filter_rewrites_message_and_each_argument() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5", "GET", f"/v1/devices?access_token={SECRET}", "1.1", 200),
        None,
    )
    assert QueryRedactionFilter().filter(record)
    assert SECRET not in record.getMessage()
    assert record.args is not None and len(record.args) == 5  # uvicorn's formatter reads them
    assert record.getMessage() == (
        f'127.0.0.1:5 - "GET /v1/devices?access_token={REDACTED} HTTP/1.1" 200'
    )


class Frame:
    """Stands in for an object logged with ``%s`` (the WebSocket library logs frames)."""

    def __str__(self) -> str:
        return f"""TEXT '{{"type":"auth","token":"{SECRET[:20]}...{SECRET[-10:]}"}}' [205 bytes]"""


def test_filter_renders_and_redacts_object_arguments_keeps_numbers() -> None:
    record = logging.LogRecord(
        "uvicorn.error", logging.DEBUG, __file__, 1, "< %s (%d)", (Frame(), 7), None
    )
    QueryRedactionFilter().filter(record)
    expected = f"""< TEXT '{{"type":"auth","token":"{REDACTED}"}}' [205 bytes] (7)"""
    assert record.getMessage() == expected
