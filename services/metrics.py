"""Prometheus metrics of the gateway, in a registry of its own (one per gateway replica)."""
from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Summary,
    disable_created_metrics,
    generate_latest,
)
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
