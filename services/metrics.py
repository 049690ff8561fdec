"""Prometheus metrics of the service: each ingress replica (the gateway, each model's) keeps a
registry of its own; the model replicas push theirs to a MetricsBoard actor, and the gateway's
/metrics merges them with its own."""
from __future__ import annotations

import ray
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Summary,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

disable_created_metrics()  # the *_created series only add noise to every scrape
METRICS_PUSH_S = 1.0  # how often a model replica sends its metrics to the board
METRICS_NAMESPACE = "genray"


SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class ServiceMetrics:
    """One registry of an ingress replica: for generation and each capability spec alike,
    genray_<capability>_requests_total{model,method,status} and
    genray_<capability>_latency_seconds{model,method}; generation's batch sizes and samples; and
    the metrics a spec declares of its own."""

    def __init__(self, specs=()):
        self.registry = CollectorRegistry()
        self.requests, self.latency, self.own = {}, {}, {}
        for name, what in (("generate", "Generation"), *((s.name, s.name.capitalize()) for s in specs)):
            self.requests[name] = Counter(f"genray_{name}_requests", f"{what} requests by model, method and HTTP "
                                          f"status", ["model", "method", "status"], registry=self.registry)
            self.latency[name] = Histogram(f"genray_{name}_latency_seconds", f"{what} request latency",
                                           ["model", "method"], registry=self.registry, buckets=SECONDS)
        kinds = {"counter": Counter, "summary": Summary}
        for spec in specs:
            self.own[spec.name] = {m.name: kinds[m.kind](f"genray_{m.name}", m.doc, list(m.labels),
                                                         registry=self.registry) for m in spec.metrics}
        self.batch = Histogram("genray_batch_size", "Samples per batch run by a model server",
                               ["model"], registry=self.registry,
                               buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
        self.samples = Counter("genray_samples_generated", "Samples generated", ["model"],
                               registry=self.registry)

    def request(self, capability: str, model: str, method: str, status: int, seconds: float | None) -> None:
        self.requests[capability].labels(model, method, str(status)).inc()
        if seconds is not None:
            self.latency[capability].labels(model, method).observe(seconds)

    def observe(self, spec, model: str, method: str, req, result) -> None:
        """A spec's own metrics of a request that succeeded."""
        if spec.observe is not None:
            spec.observe(self.own[spec.name], model, method, req, result)

    def generated(self, model: str, samples: int, batch_size: int | None) -> None:
        self.samples.labels(model).inc(samples)
        if batch_size is not None:  # counted once per batch, by its first request
            self.batch.labels(model).observe(batch_size)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def merge(texts: list[bytes]) -> bytes:
    """Prometheus text snapshots of several registries (the gateway's and every model replica's)
    as one exposition: samples of the same name and labels are summed (counters, histogram
    buckets, sums and counts all add up across replicas)."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple, float]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text.decode()):
            families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            own = values.setdefault(family.name, {})
            for s in family.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                own[key] = own.get(key, 0.0) + s.value
    for name, family in families.items():
        # Each series' lines together, its buckets in order (as one registry writes them).
        for (sample, labels), value in sorted(values[name].items(), key=_series_order):
            family.add_sample(sample, dict(labels), value)

    class Merged:
        def collect(self):
            return families.values()

    return generate_latest(Merged())


def _series_order(item) -> tuple:
    (sample, labels), _ = item
    le = dict(labels).get("le")
    return (tuple(kv for kv in labels if kv[0] != "le"), not sample.endswith("_bucket"), sample,
            float(le) if le is not None else 0.0)


@ray.remote(num_cpus=0)
class MetricsBoard:
    """The latest metrics snapshot of each model replica, pushed off the request path every
    METRICS_PUSH_S; the gateway merges them with its own at each scrape. A replica that is gone
    keeps its last snapshot, so that totals never go down."""

    def __init__(self):
        self.snapshots: dict[str, bytes] = {}

    def push(self, source: str, text: bytes) -> None:
        self.snapshots[source] = text

    def texts(self) -> list[bytes]:
        return list(self.snapshots.values())
