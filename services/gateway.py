"""The gateway: one FastAPI ingress that validates requests, routes them to the model servers
and keeps the Prometheus metrics.

    POST /v1/generate/{model}   POST /v1/attack/{model}   POST /v1/defend/{model}   POST /v1/explain/{model}
    GET /v1/models   GET /healthz   GET /metrics
"""
# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations (Request)
# after serve.ingress has rebuilt the class, where string annotations no longer resolve.
import asyncio
import logging
import time
from typing import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from ray import serve
from ray.serve.exceptions import BackPressureError

from genray.models.explain.catalog import explain_methods
from genray.models.robustness.catalog import attack_methods, defense_methods
from genray.services.metrics import GatewayMetrics
from genray.services.schemas import (
    AttackRequest,
    AttackResponse,
    DefendRequest,
    DefendResponse,
    ExplainRequest,
    ExplainResponse,
    GenerateRequest,
    GenerateResponse,
    check_applies,
    check_attack,
    check_defense,
    check_explain,
    field_error,
)

log = logging.getLogger("ray.serve")
Call = Callable[[str, dict], Awaitable[dict]]  # (model name, request payload) -> its server's result


def json_error(status: int, detail) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail})


def validation_error(e: ValidationError) -> JSONResponse:
    return json_error(422, [{"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]}
                            for err in e.errors()])


class Route:
    """One POST endpoint without the web framework: parse, check, call the deployment, answer.
    Every outcome, an unexpected exception included, is answered and counted in one place."""
    schema: type[BaseModel]
    what = "request"

    def __init__(self, models: dict[str, dict], call: Call, metrics: GatewayMetrics, timeout_s: float):
        self.models, self.call, self.metrics, self.timeout = models, call, metrics, timeout_s

    async def __call__(self, model: str, body: bytes):
        t0, req = time.perf_counter(), None
        try:
            status, resp, req = await self._handle(model, body)
        except Exception:
            log.exception("%s for %r failed", self.what, model)
            status, resp = 500, json_error(500, "internal error; the server's log has the details")
        self.record(model if model in self.models else "_unknown", req, status, time.perf_counter() - t0)
        return resp

    def check(self, req, entry: dict) -> list[dict]:
        """422 entries for a parsed request that this model cannot take."""
        return []

    def payload(self, req) -> dict:
        return req.model_dump(exclude_unset=True)

    def respond(self, model: str, entry: dict, req, result: dict):
        raise NotImplementedError

    def method_label(self, model: str, req, methods) -> str:
        """The request's method as a metric label: one the model takes, else "_invalid" (a label
        never carries what a caller typed, which would make its values unbounded)."""
        entry, method = self.models.get(model), getattr(req, "method", None)
        return method if entry and method in methods(entry["config"]) else "_invalid"

    def record(self, model: str, req, status: int, seconds: float) -> None:
        raise NotImplementedError

    async def _handle(self, model: str, body: bytes):
        entry = self.models.get(model)
        if entry is None:
            return 404, json_error(404, f"unknown model {model!r}; served here: {sorted(self.models)}"), None
        try:
            req = self.schema.model_validate_json(body or b"{}")
        except ValidationError as e:
            return 422, validation_error(e), None
        errors = self.check(req, entry)
        if errors:
            return 422, json_error(422, errors), req
        try:
            result = await asyncio.wait_for(self.call(model, self.payload(req)), self.timeout)
        except BackPressureError:
            return 503, json_error(503, f"model {model!r} is overloaded; retry later"), req
        except asyncio.TimeoutError:
            return 504, json_error(504, f"model {model!r} did not answer within {self.timeout:.0f} s"), req
        if "error" in result:
            status = result["status"]
            detail = [field_error(result.get("field") or "body", result["error"])] if status < 500 else result["error"]
            return status, json_error(status, detail), req
        return 200, self.respond(model, entry, req, result), req


class GenerateRoute(Route):
    """POST /v1/generate/{model}"""
    schema, what = GenerateRequest, "generation request"

    def check(self, req, entry):
        return check_applies(req, entry["config"])

    def payload(self, req):
        return {"n": req.n, **req.model_dump(exclude_unset=True)}

    def respond(self, model, entry, req, result):
        batch = result["batch_size"] if result["first_in_batch"] else None  # counted once per batch
        self.metrics.generated(model, len(result["samples"]), batch)
        return GenerateResponse(model=model, version=entry["summary"]["version"], samples=result["samples"])

    def record(self, model, req, status, seconds):
        self.metrics.request(model, status, seconds)


class RobustnessRoute(Route):
    """POST /v1/attack/{model} and /v1/defend/{model}: the same path, their own schema, checks,
    response and metrics."""

    def __init__(self, endpoint: str, models, call, metrics, timeout_s):
        super().__init__(models, call, metrics, timeout_s)
        attack_ = endpoint == "attack"
        self.what = endpoint
        self.schema, self.response = (AttackRequest, AttackResponse) if attack_ else (DefendRequest, DefendResponse)
        self.checks, self.methods = (check_attack, attack_methods) if attack_ else (check_defense, defense_methods)
        self.count_inputs = metrics.attacked if attack_ else metrics.defended
        self.count_request = metrics.attack_request if attack_ else metrics.defense_request

    def check(self, req, entry):
        return self.checks(req, entry["config"])

    def payload(self, req):
        return req.model_dump()

    def respond(self, model, entry, req, result):
        self.count_inputs(model, req.method, result)
        return self.response(model=model, version=entry["summary"]["version"], method=req.method, **result)

    def record(self, model, req, status, seconds):
        self.count_request(model, self.method_label(model, req, self.methods), status, seconds)


class ExplainRoute(Route):
    """POST /v1/explain/{model}: JSON, or with "format": "png" the picture itself."""
    schema, what = ExplainRequest, "explanation"

    def check(self, req, entry):
        return check_explain(req, entry["config"])

    def payload(self, req):
        return req.model_dump()

    def respond(self, model, entry, req, result):
        if req.format == "png":
            return Response(content=result["png"], media_type="image/png")
        self.metrics.explained(model, req.method, result)
        return ExplainResponse(model=model, version=entry["summary"]["version"], method=req.method, **result)

    def record(self, model, req, status, seconds):
        self.metrics.explain_request(model, self.method_label(model, req, explain_methods), status, seconds)


api = FastAPI(title="genray", description="Generation, attacks, defenses and explanations of genray registry models")


def _body(schema: type[BaseModel]) -> dict:
    # The body is parsed by the route rather than by FastAPI (so that every outcome is counted):
    # the OpenAPI document gets its schema from here.
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": schema.model_json_schema()}}}}


@serve.deployment
@serve.ingress(api)
class Gateway:
    def __init__(self, models: dict[str, dict], servers: dict, robustness=None, explainer=None,
                 request_timeout_s: float = 120.0):
        # name -> {"summary", "config", "endpoints"}: generate (a ModelServer each), attack and
        # defend (the one RobustnessServer deployment), explain (the one ExplainServer)
        self.models = models
        self.servers, self.robustness, self.explainer = servers, robustness, explainer
        self.metrics = GatewayMetrics()

        def serving(endpoint: str) -> dict[str, dict]:
            return {n: m for n, m in models.items() if endpoint in m["endpoints"]}
        self.generate_route = GenerateRoute(serving("generate"), self._generate, self.metrics, request_timeout_s)
        self.attack_route = RobustnessRoute("attack", serving("attack"), self._attack, self.metrics, request_timeout_s)
        self.defend_route = RobustnessRoute("defend", serving("defend"), self._defend, self.metrics, request_timeout_s)
        self.explain_route = ExplainRoute(serving("explain"), self._explain, self.metrics, request_timeout_s)

    async def _generate(self, model: str, payload: dict) -> dict:
        return await self.servers[model].generate.remote(payload)

    async def _attack(self, model: str, payload: dict) -> dict:
        return await self.robustness.attack.remote({**payload, "model": model})

    async def _defend(self, model: str, payload: dict) -> dict:
        return await self.robustness.defend.remote({**payload, "model": model})

    async def _explain(self, model: str, payload: dict) -> dict:
        return await self.explainer.explain.remote({**payload, "model": model})

    @api.get("/healthz")
    async def healthz(self):
        return {"status": "ok", "models": len(self.models)}

    @api.get("/v1/models")
    async def list_models(self):
        return {"models": [{**m["summary"], "endpoints": m["endpoints"]} for m in self.models.values()]}

    @api.get("/metrics")
    async def metrics(self):
        body, content_type = self.metrics.render()
        return Response(content=body, media_type=content_type)

    @api.post("/v1/generate/{model}", response_model=GenerateResponse, openapi_extra=_body(GenerateRequest))
    async def generate(self, model: str, request: Request):
        return await self.generate_route(model, await request.body())

    @api.post("/v1/attack/{model}", response_model=AttackResponse, openapi_extra=_body(AttackRequest))
    async def attack(self, model: str, request: Request):
        return await self.attack_route(model, await request.body())

    @api.post("/v1/defend/{model}", response_model=DefendResponse, openapi_extra=_body(DefendRequest))
    async def defend(self, model: str, request: Request):
        return await self.defend_route(model, await request.body())

    @api.post("/v1/explain/{model}", response_model=ExplainResponse, openapi_extra=_body(ExplainRequest),
              responses={200: {"content": {"image/png": {}}, "description": "JSON, or the picture with format png"}})
    async def explain(self, model: str, request: Request):
        return await self.explain_route(model, await request.body())
