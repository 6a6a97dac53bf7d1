"""``iotstream gateway``: run the WebSocket/REST gateway and its dashboard."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from iotstream.commands.lazy import add_deferred_service_command

if TYPE_CHECKING:
    from gateway.settings import GatewaySettings

__all__ = ["register"]

EPILOG = """\
examples:
  iotstream gateway --dev-mode                      local demo: prints a throwaway token
  GATEWAY_JWT_SECRET=... iotstream gateway --host 0.0.0.0 --allowed-origins https://ops.example
  iotstream gateway --redis-url redis://redis:6379/0 --models-dir /models

Protocol of /ws: docs/websocket.md. Dashboard: http://HOST:PORT/  API docs: /docs
"""


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``gateway``."""
    # The settings (and with them FastAPI: gateway/__init__) are imported only when the
    # gateway runs: the worker image has no FastAPI (iotstream/commands/lazy.py).
    add_deferred_service_command(
        subparsers, "gateway", "gateway.settings:GatewaySettings", _run, epilog=EPILOG
    )


def _run(settings: GatewaySettings) -> int:
    """run the WebSocket/REST gateway and the live dashboard

    Fan predictions out from the Redis stream to WebSocket dashboards (filtered per client,
    batched per tick, resumable by stream id), serve REST inference on the workers' core,
    the dashboard at / and the API docs at /docs.
    """
    from gateway.server import serve
    from iotstream.logs import configure_logging

    configure_logging(settings.log_level, "gateway")
    serve(settings)
    return 0
