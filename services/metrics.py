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

        seconds = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
        self.attacks = Counter("genray_attacks", "Attack requests by model, method and outcome (ok, rejected, "
                               "overloaded, timeout, error)", ["model", "method", "outcome"], registry=self.registry)
        self.attack_inputs = Counter("genray_attack_inputs", "Inputs attacked, by whether the attack succeeded",
                                     ["model", "method", "success"], registry=self.registry)
        self.attack_latency = Histogram("genray_attack_latency_seconds", "Attack request latency", ["model"],
                                        registry=self.registry, buckets=seconds)
        self.defenses = Counter("genray_defense", "Inputs defended, by model, method and whether the detector "
                                "flagged them ('none' for purification)", ["model", "method", "flagged"],
                                registry=self.registry)
        self.defense_requests = Counter("genray_defense_requests", "Defense requests by model, method and outcome",
                                        ["model", "method", "outcome"], registry=self.registry)
        self.defense_latency = Histogram("genray_defense_latency_seconds", "Defense request latency", ["model"],
                                         registry=self.registry, buckets=seconds)

        self.explanations = Counter("genray_explanations", "Explanation requests by model, method and HTTP status",
                                    ["model", "method", "status"], registry=self.registry)
        self.explain_latency = Histogram("genray_explain_latency_seconds", "Explanation request latency",
                                         ["method"], registry=self.registry, buckets=seconds)
        self.deletion_ratio = Summary("genray_explanation_deletion_auc_ratio", "Deletion AUC of each evaluated "
                                      "explanation over a random ranking's (lower is more faithful; the mean is "
                                      "_sum / _count)", ["model", "method"], registry=self.registry)

        self.compositions = Counter("genray_compositions", "Chorales composed or harmonised, by HTTP status",
                                    ["status"], registry=self.registry)
        self.compose_latency = Histogram("genray_compose_latency_seconds", "Composition request latency",
                                         registry=self.registry, buckets=seconds)

        self.inpaintings = Counter("genray_inpaintings", "Inpainting requests by model, method and HTTP status",
                                   ["model", "method", "status"], registry=self.registry)
        self.inpaint_latency = Histogram("genray_inpaint_latency_seconds", "Inpainting request latency", ["model"],
                                         registry=self.registry, buckets=seconds)

        self.style_transfers = Counter("genray_style_transfers", "Style transfers by HTTP status", ["status"],
                                       registry=self.registry)
        self.style_latency = Histogram("genray_style_latency_seconds", "Style transfer request latency",
                                       registry=self.registry, buckets=seconds)

        self.summaries = Counter("genray_summaries", "Summarization requests by model, aspect and HTTP status",
                                 ["model", "aspect", "status"], registry=self.registry)
        self.summarize_latency = Histogram("genray_summarize_latency_seconds", "Summarization request latency",
                                           ["model"], registry=self.registry, buckets=seconds)

    def summarize_request(self, model: str, aspect: str, status: int, seconds: float) -> None:
        self.summaries.labels(model, aspect, str(status)).inc()
        self.summarize_latency.labels(model).observe(seconds)

    def style_request(self, status: int, seconds: float) -> None:
        self.style_transfers.labels(str(status)).inc()
        self.style_latency.observe(seconds)

    def inpaint_request(self, model: str, method: str, status: int, seconds: float) -> None:
        self.inpaintings.labels(model, method, str(status)).inc()
        self.inpaint_latency.labels(model).observe(seconds)

    def compose_request(self, status: int, seconds: float) -> None:
        self.compositions.labels(str(status)).inc()
        self.compose_latency.observe(seconds)

    def request(self, model: str, status: int, seconds: float | None) -> None:
        self.requests.labels(model, str(status)).inc()
        if seconds is not None:
            self.latency.labels(model).observe(seconds)

    def generated(self, model: str, samples: int, batch_size: int | None) -> None:
        self.samples.labels(model).inc(samples)
        if batch_size is not None:  # counted once per batch, by its first request
            self.batch.labels(model).observe(batch_size)

    def attack_request(self, model: str, method: str, status: int, seconds: float) -> None:
        self.attacks.labels(model, method, outcome(status)).inc()
        self.attack_latency.labels(model).observe(seconds)

    def attacked(self, model: str, method: str, result: dict) -> None:
        _count_bools(self.attack_inputs, (model, method), result.get("success", []))

    def defense_request(self, model: str, method: str, status: int, seconds: float) -> None:
        self.defense_requests.labels(model, method, outcome(status)).inc()
        self.defense_latency.labels(model).observe(seconds)

    def defended(self, model: str, method: str, result: dict) -> None:
        if result.get("flagged") is None:  # purification flags nothing
            self.defenses.labels(model, method, "none").inc(len(result.get("purified", [])))
        else:
            _count_bools(self.defenses, (model, method), result["flagged"])

    def explain_request(self, model: str, method: str, status: int, seconds: float) -> None:
        self.explanations.labels(model, method, str(status)).inc()
        self.explain_latency.labels(method).observe(seconds)

    def explained(self, model: str, method: str, result: dict) -> None:
        for r in ((result.get("faithfulness") or {}).get("deletion") or {}).get("ratio_to_random", []):
            if r is not None:
                self.deletion_ratio.labels(model, method).observe(r)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def outcome(status: int) -> str:
    return {200: "ok", 503: "overloaded", 504: "timeout"}.get(status, "rejected" if status < 500 else "error")


def _count_bools(counter: Counter, labels: tuple[str, ...], values: list[bool]) -> None:
    """Count values under a last label "true" or "false"."""
    for value in (True, False):
        n = sum(1 for v in values if bool(v) is value)
        if n:
            counter.labels(*labels, str(value).lower()).inc(n)


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
