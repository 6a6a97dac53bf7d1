"""``iotstream``: one command for every part of the system.

Each subcommand lives in :mod:`iotstream.commands` and registers itself through a
``register(subparsers)`` function; heavy imports happen inside the handlers, and a service
command's settings class is imported only when that command runs
(:mod:`iotstream.commands.lazy`), so ``iotstream --help`` stays fast and each role's image
needs only that role's dependencies.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from iotstream.commands import COMMANDS
from iotstream.commands.lazy import DeferredParser
from iotstream.resources import MissingResourceError

__all__ = ["build_parser", "main"]

DESCRIPTION = """\
Real-time streaming ML inference for IoT.

Devices publish readings over MQTT; inference workers batch them through ONNX Runtime
models and write predictions to Redis Streams; a WebSocket gateway serves live dashboards.
"""

EPILOG = """\
examples:
  iotstream demo                           everything on this machine; dashboard on :8000
  iotstream sim --devices 100 --rate 2     100 simulated pumps, 2 readings/s each
  iotstream worker --worker-id worker-0    an inference worker (localhost broker and Redis)
  iotstream gateway                        dashboard + WebSocket/REST API
  iotstream contract check reading.json    validate a payload the way a worker would

Run 'iotstream COMMAND --help' for a command's options.
Docs: README.md and docs/ in the source tree.
"""


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="iotstream",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    # Deferred subparsers: a service command imports its settings (and its service's
    # dependencies) only when it runs, so `iotstream worker` works in the worker image,
    # which has no FastAPI (iotstream/commands/lazy.py).
    subparsers = parser.add_subparsers(
        title="commands", metavar="COMMAND", parser_class=DeferredParser
    )
    for register in COMMANDS:
        register(subparsers)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("iotstream")
    except PackageNotFoundError:
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = handler(args)
    except MissingResourceError as exc:  # a file the installation should have: one line
        print(f"iotstream: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    raise SystemExit(main())
