"""The gateway: one FastAPI ingress that validates requests, routes them to the model servers
and keeps the Prometheus metrics.

    POST /v1/generate/{model}   GET /v1/models   GET /healthz   GET /metrics
"""
# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations (Request)
# after serve.ingress has rebuilt the class, where string annotations no longer resolve.
import asyncio
import logging
import time
from typing import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from ray import serve
from ray.serve.exceptions import BackPressureError

from genray.services.metrics import GatewayMetrics
from genray.services.schemas import GenerateRequest, GenerateResponse, check_applies, field_error

log = logging.getLogger("ray.serve")
Call = Callable[[str, dict], Awaitable[dict]]  # (model name, request payload) -> its server's result


def json_error(status: int, detail) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail})


class GenerateRoute:
    """POST /v1/generate/{model} without the web framework: every outcome, an unexpected
    exception included, is answered and counted in one place."""

    def __init__(self, models: dict[str, dict], call: Call, metrics: GatewayMetrics, timeout_s: float):
        self.models, self.call, self.metrics, self.timeout = models, call, metrics, timeout_s

    async def __call__(self, model: str, body: bytes):
        t0 = time.perf_counter()
        try:
            status, resp = await self._generate(model, body)
        except Exception:
            log.exception("generation request for %r failed", model)
            status, resp = 500, json_error(500, "internal error; the server's log has the details")
        self.metrics.request(model if model in self.models else "_unknown", status, time.perf_counter() - t0)
        return resp

    async def _generate(self, model: str, body: bytes):
        entry = self.models.get(model)
        if entry is None:
            return 404, json_error(404, f"unknown model {model!r}; served: {sorted(self.models)}")
        try:
            req = GenerateRequest.model_validate_json(body or b"{}")
        except ValidationError as e:
            return 422, json_error(422, [{"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]}
                                         for err in e.errors()])
        errors = check_applies(req, entry["config"])
        if errors:
            return 422, json_error(422, errors)
        payload = {"n": req.n, **req.model_dump(exclude_unset=True)}
        try:
            result = await asyncio.wait_for(self.call(model, payload), self.timeout)
        except BackPressureError:
            return 503, json_error(503, f"model {model!r} is overloaded; retry later")
        except asyncio.TimeoutError:
            return 504, json_error(504, f"model {model!r} did not answer within {self.timeout:.0f} s")
        if "error" in result:
            status = result["status"]
            detail = [field_error(result.get("field") or "body", result["error"])] if status < 500 else result["error"]
            return status, json_error(status, detail)
        batch = result["batch_size"] if result["first_in_batch"] else None  # counted once per batch
        self.metrics.generated(model, len(result["samples"]), batch)
        return 200, GenerateResponse(model=model, version=entry["summary"]["version"], samples=result["samples"])


api = FastAPI(title="genray", description="Generation from genray registry models")
_BODY_SCHEMA = {"requestBody": {"required": False, "content": {
    "application/json": {"schema": GenerateRequest.model_json_schema()}}}}


@serve.deployment
@serve.ingress(api)
class Gateway:
    def __init__(self, models: dict[str, dict], servers: dict, request_timeout_s: float = 120.0):
        self.models = models  # name -> {"summary": ..., "config": ...}
        self.servers = servers  # name -> DeploymentHandle
        self.metrics = GatewayMetrics()
        self.route = GenerateRoute(models, self._call, self.metrics, request_timeout_s)

    async def _call(self, model: str, payload: dict) -> dict:
        return await self.servers[model].generate.remote(payload)

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
        # The body is parsed by the route rather than by FastAPI, so that every outcome is counted.
        return await self.route(model, await request.body())
