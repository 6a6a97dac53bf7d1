"""``iotstream gateway``: run the WebSocket/REST gateway and its dashboard."""

from __future__ import annotations

import argparse
import sys
from typing import Any

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
    from gateway.settings import GatewaySettings
    from iotstream.settings_cli import add_settings_arguments

    parser = subparsers.add_parser(
        "gateway",
        help="run the WebSocket/REST gateway and the live dashboard",
        description=(
            "Fan predictions out from the Redis stream to WebSocket dashboards (filtered per "
            "client, batched per tick, resumable by stream id), serve REST inference on the "
            "workers' core, the dashboard at / and the API docs at /docs."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings_arguments(parser, GatewaySettings)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from gateway.server import serve
    from gateway.settings import GatewaySettings
    from iotstream.logs import configure_logging
    from iotstream.settings_cli import SettingsError, settings_from_args

    try:
        settings = settings_from_args(GatewaySettings, args)
    except SettingsError as exc:
        print(f"iotstream gateway: invalid settings: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, "gateway")
    serve(settings)
    return 0
