"""Prometheus metrics of one worker (its own registry, so several workers can share a process
in tests). Declared in ``inference_worker/metrics.toml`` (the source of truth)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from iot_metrics import MetricSet, load_catalogue

__all__ = ["WorkerMetrics"]


class WorkerMetrics(MetricSet):
    """Counters, gauges and histograms a worker updates (``inference_worker/metrics.toml``),
    by key, e.g. ``metrics.counter("received")``; served by ``start_http_server`` when
    enabled."""

    def __init__(self) -> None:
        super().__init__(CollectorRegistry(), load_catalogue("inference_worker"))
