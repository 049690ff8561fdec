"""The serving code paths that need no running cluster: per-request failure isolation inside a
batch, and request accounting when something unexpected breaks."""
import asyncio

import torch
from prometheus_client.parser import text_string_to_metric_families

from genray.models import build
from genray.services.gateway import GenerateRoute
from genray.services.generate import INTERNAL, check_request, generate_batch
from genray.services.metrics import GatewayMetrics


def _vae():
    torch.manual_seed(0)
    return build({"family": "vae", "shape": [1, 8, 8], "num_classes": 10, "latent_dim": 4, "hidden": 8}).eval()


def test_a_failing_request_inside_a_batch_fails_alone():
    model = _vae()
    requests = [{"n": 2, "seed": 1, "label": 3}, {"n": 1, "label": 12}, {"n": 3, "seed": 2}]
    results = generate_batch(model, requests)
    assert [len(r.get("samples", [])) for r in results] == [2, 0, 3]
    assert results[1] == {"error": "label must be in [0, 9], got 12", "field": "label", "status": 422}
    # The good requests' samples are what they would be without the bad one.
    alone = generate_batch(model, [requests[0]])[0]["samples"]
    assert results[0]["samples"] == alone
    # The same check runs before a request joins a batch.
    assert check_request(model, {"n": 1, "label": 12})["status"] == 422
    assert check_request(model, {"n": 1, "label": 2}) is None


def test_an_internal_failure_is_a_500_without_details():
    model = _vae()

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error at 0xdeadbeef, pid=42")

    model._sample = broken
    results = generate_batch(model, [{"n": 1}, {"n": 2}])
    assert results == [{"error": INTERNAL, "status": 500}] * 2


def _count(metrics: GatewayMetrics, status: str) -> float:
    text = metrics.render()[0].decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "genray_requests_total" and s.labels == {"model": "vae", "status": status}:
                return s.value
    return 0.0


def test_every_outcome_is_counted_even_an_unexpected_exception():
    config = _vae().config()
    models = {"vae": {"config": config, "summary": {"version": 1}}}

    async def server_crashed(model, payload):
        raise ConnectionError("replica died")

    async def rejected(model, payload):  # what a model server answers for input only the model can judge
        return {"error": "label 3 is not served today", "field": "label", "status": 422}

    metrics = GatewayMetrics()
    resp = asyncio.run(GenerateRoute(models, server_crashed, metrics, 5.0)("vae", b'{"n": 1}'))
    assert resp.status_code == 500 and b"replica died" not in resp.body
    assert _count(metrics, "500") == 1
    resp = asyncio.run(GenerateRoute(models, rejected, metrics, 5.0)("vae", b'{"label": 3}'))
    assert resp.status_code == 422 and b'"loc":["body","label"]' in resp.body
    assert _count(metrics, "422") == 1
