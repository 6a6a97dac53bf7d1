"""Readings without a boot id: accepted, but never silently.

A reading without ``boot`` (``mosquitto_pub`` users, firmware older than the field) cannot
be told apart from the same ``seq`` of an earlier run of its device, so the store
deduplicates it on ``(device_id, seq, ts)`` instead (docs/streaming.md). Each one counts in
``worker_readings_without_boot_total`` and a warning is logged at most every 10 s.
"""

from __future__ import annotations

import logging

from prometheus_client import Counter

from inference_worker.ratelog import RateLimitedLog
from iot_contract import Reading

__all__ = ["BootlessReadings"]

log = logging.getLogger(__name__)


class BootlessReadings:
    """Counts and reports decoded readings that carry no boot id.

    Args:
        counter: the metric to increment (``WorkerMetrics.without_boot``).
        ratelog: where the warning goes, at most one line per interval.
    """

    def __init__(self, counter: Counter, ratelog: RateLimitedLog | None = None) -> None:
        self.counter = counter
        self.ratelog = ratelog or RateLimitedLog(log)

    def note(self, reading: Reading) -> None:
        """Count and (rate-limited) log ``reading`` if it has no boot id."""
        if reading.boot is not None:
            return
        self.counter.inc()
        self.ratelog.warning(
            "without-boot",
            "reading %s/%d carries no boot id: deduplicated on (device_id, seq, ts); a "
            "device that restarts its seq should send 'boot' (see docs/streaming.md)",
            reading.device_id,
            reading.seq,
        )
