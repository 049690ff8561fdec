"""The serving code paths that need no running cluster: per-request failure isolation inside a
batch, and request accounting when something unexpected breaks."""
import asyncio

import torch
from prometheus_client.parser import text_string_to_metric_families
from starlette.requests import Request

from genray.models import build
from genray.services.auth import AuthError, KeyStore, from_env
from genray.services.generate import INTERNAL, check_request, generate_batch
from genray.services.metrics import ServiceMetrics, merge
from genray.services.routes import GenerateRoute


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


def _count(metrics: ServiceMetrics, status: str) -> float:
    text = metrics.render()[0].decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "genray_generate_requests_total" and s.labels == {"model": "vae", "method": "json",
                                                                            "status": status}:
                return s.value
    return 0.0


def test_every_outcome_is_counted_even_an_unexpected_exception():
    config = _vae().config()
    models = {"vae": {"config": config, "summary": {"version": 1}}}

    async def server_crashed(model, payload):
        raise ConnectionError("replica died")

    async def rejected(model, payload):  # what a model server answers for input only the model can judge
        return {"error": "label 3 is not served today", "field": "label", "status": 422}

    metrics, open_door = ServiceMetrics(), KeyStore([], enabled=False)

    def route(call):
        return GenerateRoute(models, call, None, metrics, 5.0, open_door, 1 << 20)

    resp = asyncio.run(route(server_crashed)("vae", _request(b'{"n": 1}')))
    assert resp.status_code == 500 and b"replica died" not in resp.body
    assert _count(metrics, "500") == 1
    resp = asyncio.run(route(rejected)("vae", _request(b'{"label": 3}')))
    assert resp.status_code == 422 and b'"loc":["body","label"]' in resp.body
    assert _count(metrics, "422") == 1


def _request(body: bytes, headers: dict | None = None) -> Request:
    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    raw = [(k.lower().encode(), v.encode()) for k, v in {"content-type": "application/json", **(headers or {})}.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw, "query_string": b""}, receive)


def test_keys_are_kept_hashed_and_checked_with_scopes_and_rates():
    store = KeyStore(from_env("gr-one=generate,gr-two=admin"))
    assert all("gr-one" not in repr(e) and "gr-two" not in repr(e) for e in store.entries)
    assert store.authorize({"authorization": "Bearer gr-one"}, "generate") == "env-1"
    assert store.authorize({"x-api-key": "gr-two"}, "explain") == "env-2"  # admin takes every scope
    for headers, scope, status in (({}, "generate", 401), ({"authorization": "Bearer gr-three"}, "generate", 401),
                                   ({"authorization": "Bearer gr-one"}, "attack", 403)):
        try:
            store.authorize(headers, scope)
            raise AssertionError("authorized")
        except AuthError as e:
            assert e.status == status
    store.entries[0].rate_per_s, store.entries[0].burst = 1.0, 2
    for _ in range(2):
        store.authorize({"authorization": "Bearer gr-one"}, "generate")
    try:
        store.authorize({"authorization": "Bearer gr-one"}, "generate")
        raise AssertionError("not limited")
    except AuthError as e:
        assert e.status == 429 and 0 < e.retry_after <= 1.0


def test_metrics_of_several_replicas_merge_into_one_exposition():
    """What the gateway's /metrics serves: the model replicas' snapshots and its own, summed
    series by series, in the Prometheus text format."""
    a, b = ServiceMetrics(), ServiceMetrics()
    a.request("generate", "vae", "json", 200, 0.01)
    b.request("generate", "vae", "json", 200, 0.2)
    b.request("generate", "gan", "json", 422, 0.3)
    a.generated("vae", 8, 8)
    b.generated("vae", 16, 16)
    merged = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in text_string_to_metric_families(merge([a.render()[0], b.render()[0]]).decode())
              for s in f.samples}
    vae, gan = (("method", "json"), ("model", "vae")), (("method", "json"), ("model", "gan"))
    assert merged[("genray_generate_requests_total", (*vae, ("status", "200")))] == 2
    assert merged[("genray_generate_requests_total", (*gan, ("status", "422")))] == 1
    assert merged[("genray_generate_latency_seconds_bucket", (("le", "0.025"), *vae))] == 1
    assert merged[("genray_generate_latency_seconds_bucket", (("le", "+Inf"), *vae))] == 2
    assert abs(merged[("genray_generate_latency_seconds_sum", vae)] - 0.21) < 1e-9
    assert merged[("genray_samples_generated_total", (("model", "vae"),))] == 24
    assert merged[("genray_batch_size_count", (("model", "vae"),))] == 2
