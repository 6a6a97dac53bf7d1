"""Prometheus metrics of the Open Inference Protocol endpoints, in the gateway's registry.
Declared in ``gateway/oip/metrics.toml`` (the source of truth)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from iot_metrics import MetricSet, load_catalogue

__all__ = ["OipMetrics"]


class OipMetrics(MetricSet):
    """Requests per model, protocol and outcome; the dynamic batcher's batches and queue
    (``gateway/oip/metrics.toml``), by key, e.g. ``metrics.counter("requests")``.

    The mean batch is ``iotstream_gateway_oip_batch_requests_sum / _count``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry, load_catalogue("gateway.oip"))
        self._batch_requests = self.histogram("batch_requests")
        self._batch_readings = self.histogram("batch_readings")

    def batch(self, requests: int, readings: int) -> None:
        """Record one scored batch."""
        self._batch_requests.observe(requests)
        self._batch_readings.observe(readings)
