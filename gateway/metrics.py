"""Prometheus metrics of one gateway, in its own registry (no process-wide globals, so tests
can build many apps)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["GatewayMetrics"]


class GatewayMetrics:
    """The gateway's counters and gauges, exposed at ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.clients = Gauge("iotstream_gateway_clients", "Connected WebSocket clients", registry=r)
        self.connections = Gauge(
            "iotstream_gateway_connections",
            "WebSocket connections from upgrade until gone, closing ones included (max_clients)",
            registry=r,
        )
        self.frames = Counter(
            "iotstream_gateway_frames_total", "Frames sent to clients", ["type"], registry=r
        )
        self.items = Counter(
            "iotstream_gateway_items_total", "Predictions delivered to clients", registry=r
        )
        self.read_items = Counter(
            "iotstream_gateway_read_items_total", "Predictions read from Redis", registry=r
        )
        self.reads = Counter(
            "iotstream_gateway_xreads_total", "XREAD calls that returned data", registry=r
        )
        self.bad_records = Counter(
            "iotstream_gateway_bad_records_total",
            "Stream entries that are not predictions",
            registry=r,
        )
        self.drops = Counter(
            "iotstream_gateway_dropped_items_total",
            "Predictions dropped by coalescing for clients that asked for it",
            registry=r,
        )
        self.slow_closes = Counter(
            "iotstream_gateway_slow_closes_total", "Clients closed as slow consumers", registry=r
        )
        self.aborts = Counter(
            "iotstream_gateway_aborted_connections_total",
            "Connections aborted because their close did not finish within close_timeout_s",
            registry=r,
        )
        self.auth_failures = Counter(
            "iotstream_gateway_auth_failures_total", "Refused tokens", ["where"], registry=r
        )
        self.origin_refusals = Counter(
            "iotstream_gateway_origin_refusals_total", "Handshakes from foreign origins", registry=r
        )
        self.read_lag = Histogram(
            "iotstream_gateway_xread_lag_seconds",
            "Age of the newest entry of each XREAD batch when read (Redis to gateway)",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.reader_errors = Counter(
            "iotstream_gateway_reader_errors_total", "Redis errors in the stream reader", registry=r
        )
        self.rest_rejections = Counter(
            "iotstream_gateway_rest_rejections_total",
            "REST requests refused by the rate or size limit",
            ["reason"],
            registry=r,
        )
