"""The Ray Serve application: one autoscaled, batching ModelServer deployment per registry model,
behind a FastAPI Gateway that validates requests, routes them and keeps Prometheus metrics.

    POST /v1/generate/{model}   GET /v1/models   GET /healthz   GET /metrics
"""

import asyncio
import base64
import time
from dataclasses import dataclass

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from ray import serve
from ray.serve.exceptions import BackPressureError

from cluster.registry import Registry, RegistryError
from cluster.storage import Storage
from models.base import seeded
from models.codecs import music
from models.codecs.images import to_png
from services.metrics import GatewayMetrics
from services.schemas import GenerateRequest, GenerateResponse, check_applies, field_error


GATEWAY_CPUS = 0.25


@dataclass
class ServeOptions:
    max_replicas: int = 2
    # Samples (rows), not requests. On CPUs a 64-row forward is as fast per sample as any larger one,
    # and one request's 64 samples always fit in a batch.
    max_batch_size: int = 64
    batch_wait_timeout_s: float = 0.005
    max_ongoing_requests: int = 64
    max_queued_requests: int = 256
    # CPUs reserved per replica (torch threads: this, rounded, at least 1). None: 0.5, or less so
    # that every model's first replica fits in half the cluster, leaving room to scale up.
    cpus_per_replica: float | None = None
    request_timeout_s: float = 120.0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def encode_sample(modality: str, sample, wav: bool = False):
    """A sample as JSON: a base64 PNG, a string of text, a list of numbers, or for music the
    events with a base64 MIDI file (and WAV on request)."""
    if modality == "image":
        return _b64(to_png(sample))
    if modality == "music":
        out = {"events": " ".join(sample), "midi": _b64(music.to_midi(sample))}
        if wav:
            out["wav"] = _b64(music.to_wav(sample))
        return out
    return sample


@serve.deployment
class ModelServer:
    """Holds one registry model and generates for batches of requests."""

    def __init__(self, storage_uri: str, ref: str, max_batch_size: int, batch_wait_timeout_s: float,
                 threads: int = 1):
        self.model, self.record = Registry(Storage(storage_uri)).load(ref)
        self.modality = self.model.modality
        torch.set_num_threads(threads)
        self.generate.set_max_batch_size(max_batch_size)
        self.generate.set_batch_wait_timeout_s(batch_wait_timeout_s)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005, batch_size_fn=lambda reqs: sum(r["n"] for r in reqs))
    async def generate(self, requests: list[dict]) -> list[dict]:
        # Rows of one request share its generator, so its samples depend on its seed alone,
        # not on which other requests were batched with it.
        rows = [g for r in requests for g in [seeded(r.get("seed"))] * r["n"]]
        keys = self.model.sample_options - {"seed"}
        defaults = {k: GenerateRequest.model_fields[k].default for k in keys}
        opts = {k: [r.get(k, defaults[k]) for r in requests for _ in range(r["n"])] for k in keys}
        wav = [r.get("wav", False) for r in requests for _ in range(r["n"])]
        samples = [encode_sample(self.modality, s, w)
                   for s, w in zip(self.model.sample(len(rows), generator=rows, **opts), wav)]
        out, i = [], 0
        for j, r in enumerate(requests):
            out.append({"samples": samples[i: i + r["n"]], "batch_size": len(rows), "first_in_batch": j == 0})
            i += r["n"]
        return out


def _json_error(status: int, detail) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail})


api = FastAPI(title="genray", description="Generation from genray registry models")
_BODY_SCHEMA = {"requestBody": {"required": False, "content": {
    "application/json": {"schema": GenerateRequest.model_json_schema()}}}}


@serve.deployment
@serve.ingress(api)
class Gateway:
    def __init__(self, models: dict[str, dict], servers: dict, request_timeout_s: float = 120.0):
        self.models = models  # name -> {"summary": ..., "config": ...}
        self.servers = servers  # name -> DeploymentHandle
        self.timeout = request_timeout_s
        self.metrics = GatewayMetrics()

    @api.get("/healthz")
    async def healthz(self):
        return {"status": "ok", "models": len(self.models)}

    @api.get("/v1/models")
    async def list_models(self):
        return {"models": [m["summary"] for m in self.models.values()]}

    @api.get("/metrics")
    async def metrics(self):
        body, content_type = self.metrics.render()
        return Response(content=body, media_type=content_type)

    @api.post("/v1/generate/{model}", response_model=GenerateResponse, openapi_extra=_BODY_SCHEMA)
    async def generate(self, model: str, request: Request):
        t0 = time.perf_counter()
        status, resp = await self._generate(model, await request.body())
        self.metrics.request(model if model in self.models else "_unknown", status, time.perf_counter() - t0)
        return resp

    async def _generate(self, model: str, body: bytes):
        entry = self.models.get(model)
        if entry is None:
            return 404, _json_error(404, f"unknown model {model!r}; served: {sorted(self.models)}")
        # Parsed here rather than by FastAPI so that every outcome is counted in one place.
        try:
            req = GenerateRequest.model_validate_json(body or b"{}")
        except ValidationError as e:
            return 422, _json_error(422, [{"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]}
                                          for err in e.errors()])
        errors = check_applies(req, entry["config"])
        if errors:
            return 422, _json_error(422, errors)
        payload = {"n": req.n, **req.model_dump(exclude_unset=True)}
        try:
            result = await asyncio.wait_for(self.servers[model].generate.remote(payload), self.timeout)
        except BackPressureError:
            return 503, _json_error(503, f"model {model!r} is overloaded; retry later")
        except asyncio.TimeoutError:
            return 504, _json_error(504, f"model {model!r} did not answer within {self.timeout:.0f} s")
        except ValueError as e:  # an input the model itself rejected
            return 422, _json_error(422, [field_error("body", str(e))])
        self.metrics.generated(model, len(result["samples"]), result["batch_size"] if result["first_in_batch"] else None)
        s = entry["summary"]
        return 200, GenerateResponse(model=model, version=s["version"], samples=result["samples"])


def build_app(storage_uri: str, refs: list[str] | None = None, options: ServeOptions | None = None):
    """The Serve application for registry models `refs` (default: the latest version of each)."""
    o = options or ServeOptions()
    registry = Registry(Storage(storage_uri))
    records = [registry.record(r) for r in (refs or registry.names())]
    if not records:
        raise RegistryError(f"no models to serve in {storage_uri}; train one with `genray train`")
    autoscaling = {"min_replicas": 1, "max_replicas": o.max_replicas, "target_ongoing_requests": 16,
                   "upscale_delay_s": 3, "downscale_delay_s": 60}
    cpus = o.cpus_per_replica
    if cpus is None:
        import ray

        total = ray.cluster_resources().get("CPU", 1.0) if ray.is_initialized() else 1.0
        cpus = max(0.05, min(0.5, (total - GATEWAY_CPUS) / (2 * len(records))))
    servers, models = {}, {}
    for rec in records:
        servers[rec.name] = ModelServer.options(
            name=f"model-{rec.name}", autoscaling_config=autoscaling,
            max_ongoing_requests=o.max_ongoing_requests, max_queued_requests=o.max_queued_requests,
            ray_actor_options={"num_cpus": cpus},
        ).bind(registry.storage.uri, rec.ref, o.max_batch_size, o.batch_wait_timeout_s, max(1, round(cpus)))
        summary = rec.summary()
        summary["metrics"] = {k: v for k, v in rec.metrics.items() if k != "history"}
        models[rec.name] = {"summary": summary, "config": rec.config}
    # One gateway replica keeps /metrics whole; the model servers are what scales.
    return Gateway.options(num_replicas=1, ray_actor_options={"num_cpus": GATEWAY_CPUS},
                           max_ongoing_requests=4 * o.max_ongoing_requests,
                           max_queued_requests=4 * o.max_queued_requests).bind(models, servers, o.request_timeout_s)


def app(args: dict):
    """Application builder for `serve run` / `serve deploy` config files:
    import_path: services.app:app, args: {storage: URI, models: [refs], max_replicas: N, ...}."""
    args = dict(args)
    storage = args.pop("storage", None) or Storage().uri
    refs = args.pop("models", None)
    return build_app(storage, refs, ServeOptions(**args))

