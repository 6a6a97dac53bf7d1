"""Running the simulator in the foreground."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Any

from device_sim.fleet import Fleet, FleetStats
from device_sim.rawload import RawLoadFleet
from device_sim.settings import SimSettings

__all__ = ["run"]

log = logging.getLogger(__name__)


def run(settings: SimSettings, stop: threading.Event | None = None) -> FleetStats:
    """Run the fleet until Ctrl-C/SIGTERM, ``duration`` or ``count``; returns the counters."""
    stop = stop or threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    with contextlib.ExitStack() as stack:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                stack.callback(signal.signal, signum, signal.signal(signum, _on_signal))
        fleet = (RawLoadFleet if settings.load_client == "raw" else Fleet)(settings)
        log.info(
            "simulating %d devices at %.3g readings/s each (%s mode, %d connections, QoS %d, "
            "MQTT %s, %s) -> %s",
            settings.devices,
            settings.rate,
            settings.mode,
            len(fleet.connections),
            settings.qos,
            settings.protocol,
            settings.codec,
            settings.mqtt_url,
        )
        return fleet.run(stop)
