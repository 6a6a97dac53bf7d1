"""Prometheus metrics of the Open Inference Protocol endpoints, in the gateway's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["OipMetrics"]

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class OipMetrics:
    """Requests per model, protocol and outcome; the dynamic batcher's batches and queue.

    The mean batch is ``iotstream_gateway_oip_batch_requests_sum / _count``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter(
            "iotstream_gateway_oip_requests_total",
            "Open Inference Protocol inference requests by model, protocol and outcome "
            "(ok, invalid, not_found, overloaded, unavailable, unauthenticated)",
            ["model", "protocol", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "iotstream_gateway_oip_request_seconds",
            "Inference request time in the gateway (queue + batch + encode), by model/protocol",
            ["model", "protocol"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.readings = Counter(
            "iotstream_gateway_oip_readings_total",
            "Rows (readings) scored through the protocol, by model and protocol",
            ["model", "protocol"],
            registry=r,
        )
        self.batch_requests = Histogram(
            "iotstream_gateway_oip_batch_requests",
            "Requests per dynamic batch (mean batch = _sum / _count)",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.batch_readings = Histogram(
            "iotstream_gateway_oip_batch_readings",
            "Readings per dynamic batch (one core call)",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.queue = Gauge(
            "iotstream_gateway_oip_queue_requests",
            "Requests accepted by the dynamic batcher and not yet answered",
            registry=r,
        )
        self.rejections = Counter(
            "iotstream_gateway_oip_rejections_total",
            "Requests refused before inference (queue_full)",
            ["reason"],
            registry=r,
        )

    def batch(self, requests: int, readings: int) -> None:
        """Record one scored batch."""
        self.batch_requests.observe(requests)
        self.batch_readings.observe(readings)
