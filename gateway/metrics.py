"""Prometheus metrics of one gateway, in its own registry (no process-wide globals, so tests
can build many apps). Declared in ``gateway/metrics.toml`` (the source of truth)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from iot_metrics import MetricSet, load_catalogue

__all__ = ["GatewayMetrics"]


class GatewayMetrics(MetricSet):
    """The gateway's counters, gauges and histograms (``gateway/metrics.toml``), exposed at
    ``/metrics``; by key, e.g. ``metrics.counter("frames")``."""

    def __init__(self) -> None:
        super().__init__(CollectorRegistry(auto_describe=True), load_catalogue("gateway"))
