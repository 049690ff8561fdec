"""Prometheus metrics of the gateway, in a registry of its own (one per gateway replica)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

disable_created_metrics()  # the *_created series only add noise to every scrape


class GatewayMetrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("genray_requests", "Generation requests by model and HTTP status",
                                ["model", "status"], registry=self.registry)
        self.latency = Histogram("genray_request_latency_seconds", "Generation request latency",
                                 ["model"], registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.batch = Histogram("genray_batch_size", "Samples per batch run by a model server",
                               ["model"], registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
        self.samples = Counter("genray_samples_generated", "Samples generated", ["model"],
                               registry=self.registry)

    def request(self, model: str, status: int, seconds: float | None) -> None:
        self.requests.labels(model, str(status)).inc()
        if seconds is not None:
            self.latency.labels(model).observe(seconds)

    def generated(self, model: str, samples: int, batch_size: int | None) -> None:
        self.samples.labels(model).inc(samples)
        if batch_size is not None:  # counted once per batch, by its first request
            self.batch.labels(model).observe(batch_size)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
