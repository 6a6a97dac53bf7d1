"""``iotstream sim``: simulate a fleet of devices publishing readings."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from iotstream.commands.lazy import add_deferred_service_command

if TYPE_CHECKING:
    from device_sim.settings import SimSettings

__all__ = ["register"]

EPILOG = """\
examples:
  iotstream sim                                   50 devices, 1 reading/s each, localhost
  iotstream sim --devices 1000 --rate 0.5 --codec msgpack
  iotstream sim --mode load --devices 2000 --rate 5 --connections 4   benchmark load
  iotstream sim --count 10 --devices 3            30 readings, then exit
  iotstream sim --devices 200 --drift 'offset:bearing_temp_c=15,ramp=60'
                                                  half the fleet drifts over a minute
  iotstream sim --drift 'new-machine-type,start=30' --drift-devices 0.3
                                                  30 % become an unseen machine type at 30 s
"""


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``sim``."""
    add_deferred_service_command(
        subparsers, "sim", "device_sim.settings:SimSettings", _run, epilog=EPILOG
    )


def _run(settings: SimSettings) -> int:
    """simulate devices publishing sensor readings over MQTT

    Simulate a fleet of rotating machines (pumps) publishing 16-feature readings to
    devices/<id>/telemetry, with labelled fault episodes whose ground truth travels in each
    reading. Prints progress every few seconds; Ctrl-C stops cleanly.
    """
    from device_sim.app import run
    from iotstream.logs import configure_logging

    configure_logging("INFO", "sim")
    stats = run(settings)
    return 0 if stats.dropped == 0 else 1
