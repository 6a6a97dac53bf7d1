"""The gateway's HTTP server: uvicorn with the gateway's own WebSocket protocol
(:class:`~gateway.connection.AbortableWebSocketProtocol`), and query strings redacted from
every log line (:mod:`gateway.redact`)."""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from gateway.connection import AbortableWebSocketProtocol
from gateway.redact import install_redaction
from gateway.settings import GatewaySettings
from iot_contract.frames import MAX_CONTROL_MESSAGE

__all__ = ["serve"]


def serve(settings: GatewaySettings) -> None:
    """Run the gateway with uvicorn until it is stopped (logging already configured)."""
    install_redaction()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        ws=AbortableWebSocketProtocol,
        ws_per_message_deflate=settings.ws_compression,
        ws_max_size=MAX_CONTROL_MESSAGE,  # clients only send small control messages
        server_header=False,
        log_config=None,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=5,
    )
