"""Prometheus metrics of one service instance, in a registry of its own (no process-wide state).

Requests by route and status, latency by route, model batch sizes and queue depth by encoder, and the
items dropped because their client disconnected; :meth:`ServeMetrics.exposition` renders the text format.

Example:
    >>> metrics = ServeMetrics()
    >>> metrics.observe_batch("text", 3)
    >>> 'anyclip_batch_size_count{encoder="text"} 1.0' in metrics.exposition().decode()
    True
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServeMetrics:
    """The service's counters, gauges and histograms (see the module docstring)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("anyclip_requests", "HTTP requests by route and status", ["route", "status"],
                                registry=self.registry)
        self.latency = Histogram("anyclip_request_seconds", "HTTP request latency by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("anyclip_batch_size", "inputs per model batch (before padding)", ["encoder"],
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("anyclip_queue_depth", "inputs waiting for a model batch", ["encoder"],
                                 registry=self.registry)
        self.dropped = Counter("anyclip_dropped", "inputs dropped unencoded: their client disconnected",
                               ["encoder"], registry=self.registry)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def observe_batch(self, encoder: str, size: int) -> None:
        """Record one model batch of ``size`` real inputs."""
        self.batch_size.labels(encoder).observe(size)

    def set_queue_depth(self, encoder: str, depth: int) -> None:
        """Set the number of inputs waiting for ``encoder``."""
        self.queue_depth.labels(encoder).set(depth)

    def count_drop(self, encoder: str) -> None:
        """Count one input dropped because its client left."""
        self.dropped.labels(encoder).inc()

    def exposition(self) -> bytes:
        """The Prometheus text format of every metric."""
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "ServeMetrics"]
