"""Prometheus metrics of one worker (its own registry, so several workers can share a process
in tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["WorkerMetrics"]


class WorkerMetrics:
    """Counters and gauges a worker updates; served by ``start_http_server`` when enabled."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.received = Counter("worker_readings_received", "MQTT messages received", registry=r)
        self.stored = Counter("worker_predictions_stored", "Predictions appended", registry=r)
        self.duplicates = Counter(
            "worker_duplicates", "Redelivered readings already stored", registry=r
        )
        self.without_boot = Counter(
            "worker_readings_without_boot",
            "Readings that carry no boot id (deduplicated on device, seq and ts instead)",
            registry=r,
        )
        self.rejected = Counter("worker_rejected", "Readings dead-lettered", ["reason"], registry=r)
        self.batches = Counter("worker_batches", "Micro-batches processed", registry=r)
        self.batch_size = Histogram(
            "worker_batch_size",
            "Readings per micro-batch",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=r,
        )
        self.inference_seconds = Histogram(
            "worker_inference_seconds",
            "Decode + model time per micro-batch",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0),
            registry=r,
        )
        self.acks_pending = Gauge(
            "worker_acks_pending", "Readings received but not yet acknowledged", registry=r
        )
        self.redis_retries = Counter(
            "worker_redis_retries", "Batch writes retried after a Redis error", registry=r
        )
        self.queue_depth = Gauge(
            "worker_queue_depth", "Readings waiting between MQTT and inference", registry=r
        )
        self.takeovers = Counter(
            "worker_takeovers",
            "Times the load moved batch work from the MQTT thread to the worker's own thread",
            registry=r,
        )
        self.backpressure_seconds = Gauge(
            "worker_backpressure_seconds",
            "Time the MQTT thread waited for queue room",
            registry=r,
        )
