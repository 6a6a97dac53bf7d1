"""Readings without a boot id are counted and logged, at most one line per interval."""

from __future__ import annotations

import logging

import pytest

from inference_worker.bootless import BootlessReadings
from inference_worker.metrics import WorkerMetrics
from inference_worker.ratelog import RateLimitedLog
from iot_contract import Reading


def test_boot_less_readings_count_and_log_at_a_bounded_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    metrics = WorkerMetrics()
    logger = logging.getLogger("test.bootless")
    noted = BootlessReadings(
        metrics.counter("without_boot"), RateLimitedLog(logger, 10.0, lambda: now[0])
    )
    with caplog.at_level(logging.WARNING, logger="test.bootless"):
        for seq in range(50):
            noted.note(Reading(device_id="esp", seq=seq, ts=1.0, features=[1.0]))
            noted.note(Reading(device_id="sim", boot=3, seq=seq, ts=1.0, features=[1.0]))
            now[0] += 0.5  # 25 s in all: the first line and two more
    count = metrics.registry.get_sample_value("worker_readings_without_boot_total")
    assert count == 50
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert "esp/0 carries no boot id" in lines[0]
    assert "(+19 more like it" in lines[1]
