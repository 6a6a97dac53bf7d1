"""A WebSocket protocol for uvicorn that lets the app abort its connection.

Why a protocol of our own: uvicorn writes a close frame only once the socket has drained, and
closes the transport by flushing it first. A client that stops reading never drains, so a
slow consumer's close frame was never written and its connection stayed ESTABLISHED with
megabytes queued, forever. The gateway aborts such a connection after ``close_timeout_s``
through the :data:`CONNECTION_EXTENSION` this protocol puts in the ASGI scope.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Any, Final, Protocol

from starlette.websockets import WebSocket
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

__all__ = [
    "CONNECTION_EXTENSION",
    "AbortableWebSocketProtocol",
    "ConnectionControl",
    "connection_control",
]

CONNECTION_EXTENSION: Final = "iotstream.connection"
"""ASGI scope extension holding the connection's :class:`ConnectionControl`."""
_LINGER_RESET: Final = struct.pack("ii", 1, 0)
"""SO_LINGER on, 0 s: close() sends RST and drops the unsent bytes (else the kernel keeps an
orphaned socket retrying to a peer whose window stays shut)."""


class ConnectionControl(Protocol):
    """What the app may do to its connection's transport."""

    def abort(self) -> None:
        """Drop the connection now: RST, queued bytes discarded."""

    async def wait_closed(self) -> None:
        """Return once the transport is closed."""


class AbortableWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's sans-I/O WebSocket protocol plus a :class:`ConnectionControl` in the scope."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._closed = asyncio.Event()

    def handle_connect(self, event: Request) -> None:
        """Build the scope as uvicorn does, then add the extension (the app task is created
        but has not run yet, so it sees it)."""
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope["extensions"][CONNECTION_EXTENSION] = self

    def connection_lost(self, exc: Exception | None) -> None:
        """Record that the transport is gone."""
        super().connection_lost(exc)
        self._closed.set()

    def abort(self) -> None:
        """See :meth:`ConnectionControl.abort`."""
        if self._closed.is_set():
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        self.transport.abort()

    async def wait_closed(self) -> None:
        """See :meth:`ConnectionControl.wait_closed`."""
        await self._closed.wait()


def connection_control(websocket: WebSocket) -> ConnectionControl | None:
    """The connection's control, or ``None`` under a server without it (the test client)."""
    extensions = websocket.scope.get("extensions") or {}
    control: ConnectionControl | None = extensions.get(CONNECTION_EXTENSION)
    return control
