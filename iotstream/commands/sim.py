"""``iotstream sim``: simulate a fleet of devices publishing readings."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]

EPILOG = """\
examples:
  iotstream sim                                   50 devices, 1 reading/s each, localhost
  iotstream sim --devices 1000 --rate 0.5 --codec msgpack
  iotstream sim --mode load --devices 2000 --rate 5 --connections 4   benchmark load
  iotstream sim --count 10 --devices 3            30 readings, then exit
"""


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``sim``."""
    from device_sim.settings import SimSettings
    from iotstream.settings_cli import add_settings_arguments

    parser = subparsers.add_parser(
        "sim",
        help="simulate devices publishing sensor readings over MQTT",
        description=(
            "Simulate a fleet of rotating machines (pumps) publishing 16-feature readings to "
            "devices/<id>/telemetry, with labelled fault episodes whose ground truth travels "
            "in each reading. Prints progress every few seconds; Ctrl-C stops cleanly."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_settings_arguments(parser, SimSettings)
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from device_sim.app import run
    from device_sim.settings import SimSettings
    from iotstream.logs import configure_logging
    from iotstream.settings_cli import SettingsError, settings_from_args

    try:
        settings = settings_from_args(SimSettings, args)
    except SettingsError as exc:
        print(f"iotstream sim: invalid settings: {exc}", file=sys.stderr)
        return 2
    configure_logging("INFO", "sim")
    stats = run(settings)
    return 0 if stats.dropped == 0 else 1
