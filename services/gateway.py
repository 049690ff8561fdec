"""The gateway: one FastAPI ingress that validates requests, routes them to the model servers
and keeps the Prometheus metrics.

    POST /v1/generate/{model}[@{version}]   POST /v1/attack/{model}   POST /v1/defend/{model}
    POST /v1/explain/{model}   POST /v1/admin/reload   GET /v1/models   GET /healthz   GET /metrics
"""
# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations (Request)
# after serve.ingress has rebuilt the class, where string annotations no longer resolve.
import asyncio
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from ray import serve
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError

from genray.cluster.progress import PROGRESS_BOARD, PROGRESS_NAMESPACE
from genray.cluster.registry import Registry
from genray.cluster.storage import Storage
from genray.models.explain.catalog import explain_methods
from genray.models.robustness.catalog import attack_methods, defense_methods
from genray.services.auth import AuthError, KeyEntry, KeyStore
from genray.services.following import served_summary, watch
from genray.services.metrics import GatewayMetrics
from genray.services.schemas import (
    AUTH_ERRORS,
    POST_ERRORS,
    AttackRequest,
    AttackResponse,
    DefendRequest,
    DefendResponse,
    ExplainRequest,
    ExplainResponse,
    GenerateRequest,
    GenerateResponse,
    ReloadResponse,
    check_applies,
    check_attack,
    check_defense,
    check_explain,
    field_error,
)

log = logging.getLogger("ray.serve")
PLAYGROUND = (Path(__file__).parent / "playground.html").read_text()
Call = Callable[[str, dict], Any]  # (model name, request payload) -> the server's DeploymentResponse


def json_error(status: int, detail, retry_after: int | None = None) -> JSONResponse:
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return JSONResponse(status_code=status, content={"detail": detail}, headers=headers)


def validation_error(e: ValidationError) -> JSONResponse:
    return json_error(422, [{"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]}
                            for err in e.errors()])


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused past `limit` bytes before it is read (Content-Length) or as it arrives."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def auth_error(e: AuthError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else {}
    if e.retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(e.retry_after)))
    return JSONResponse(status_code=e.status, content={"detail": str(e)}, headers=headers)


class Route:
    """One POST endpoint without the web framework: authorise, read, parse, check, call the
    deployment, answer. Every outcome, an unexpected exception included, is answered and counted
    in one place."""
    schema: type[BaseModel]
    what = "request"
    scope = "generate"  # what the caller's key must allow
    pins = False  # whether a path may name a version, NAME@VERSION
    pending: dict[str, dict] = {}  # models still training (the gateway's, shared)

    def __init__(self, models: dict[str, dict], call: Call, metrics: GatewayMetrics, timeout_s: float,
                 keys: KeyStore, max_body_bytes: int):
        self.models, self.call, self.metrics, self.timeout = models, call, metrics, timeout_s
        self.keys, self.max_body = keys, max_body_bytes

    async def __call__(self, model: str, request: Request):
        t0, req = time.perf_counter(), None
        try:
            self.keys.authorize(request.headers, self.scope)
            body = await read_body(request, self.max_body)
            status, resp, req = await self._handle(model, body)
        except AuthError as e:
            status, resp = e.status, auth_error(e)
        except BodyTooLarge:
            status, resp = 413, json_error(413, f"the request body is over {self.max_body} bytes")
        except Exception:
            log.exception("%s for %r failed", self.what, model)
            status, resp = 500, json_error(500, "internal error; the server's log has the details")
        name = model.partition("@")[0] if self.pins else model
        self.record(name if name in self.models else "_unknown", req, status, time.perf_counter() - t0)
        return resp

    def check(self, req, entry: dict) -> list[dict]:
        """422 entries for a parsed request that this model cannot take."""
        return []

    def payload(self, req) -> dict:
        return req.model_dump(exclude_unset=True)

    async def invoke(self, model: str, req) -> dict:
        response = self.call(model, self.payload(req))
        try:
            return await response
        except asyncio.CancelledError:  # timed out, or the client went away: stop the replica's work too
            response.cancel()
            raise

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
        name, _, pin = model.partition("@") if self.pins else (model, "", "")
        entry = self.models.get(name)
        if entry is None and name in self.pending:
            progress = self.pending[name].get("progress") or {}
            at = f" (epoch {progress['epoch']}/{progress['epochs']})" if progress.get("epoch") else ""
            return 503, json_error(503, f"model {name!r} is still training{at}; retry later", retry_after=15), None
        if entry is None or (pin and not pin.isdigit()):
            return 404, json_error(404, f"unknown model {model!r}; served here: {sorted(self.models)}"), None
        try:
            req = self.schema.model_validate_json(body or b"{}")
        except ValidationError as e:
            return 422, validation_error(e), None
        if pin:
            req = req.model_copy(update={"version": int(pin)})
        model = name
        errors = self.check(req, entry)
        if errors:
            return 422, json_error(422, errors), req
        try:
            result = await asyncio.wait_for(self.invoke(model, req), self.timeout)
        except BackPressureError:
            return 503, json_error(503, f"model {model!r} is overloaded; retry later", retry_after=1), req
        except (RayActorError, ActorUnavailableError):  # a replica died mid-request: Serve replaces it
            return 503, json_error(503, f"model {model!r} lost a replica; retry", retry_after=1), req
        except asyncio.TimeoutError:
            return 504, json_error(504, f"model {model!r} did not answer within {self.timeout:g} s"), req
        if "error" in result:
            status = result["status"]
            detail = ([field_error(result.get("field") or "body", result["error"])] if status == 422
                      else result["error"])
            return status, json_error(status, detail), req
        return 200, self.respond(model, entry, req, result), req


class GenerateRoute(Route):
    """POST /v1/generate/{model} and {model}@{version}: JSON, or with "stream": true server-sent
    events."""
    schema, what, pins = GenerateRequest, "generation request", True

    def __init__(self, models, call: Call, stream: Callable, metrics, timeout_s, keys, max_body_bytes):
        super().__init__(models, call, metrics, timeout_s, keys, max_body_bytes)
        self.stream = stream  # (model name, payload) -> an async iterator of the server's events

    def check(self, req, entry):
        return check_applies(req, entry["config"])

    def payload(self, req):
        return {"n": req.n, **req.model_dump(exclude_unset=True)}

    async def invoke(self, model, req):
        if not req.stream:
            return await super().invoke(model, req)
        events = self.stream(model, self.payload(req))
        try:
            first = await events.__anext__()  # an error, or the first piece: the status is known
        except asyncio.CancelledError:
            events.cancel()
            raise
        return first if "error" in first else {"events": events, "first": first}

    def respond(self, model, entry, req, result):
        if "events" in result:
            self.metrics.generated(model, 1, None)
            return StreamingResponse(_sse(result["first"], result["events"]), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        batch = result["batch_size"] if result["first_in_batch"] else None  # counted once per batch
        self.metrics.generated(model, len(result["samples"]), batch)
        return GenerateResponse(model=model, version=result["version"], samples=result["samples"])

    def record(self, model, req, status, seconds):
        self.metrics.request(model, status, seconds)


async def _sse(first: dict, events):
    """Server-sent events: each server event as `data: JSON`, an error as a last event with
    "error" (after the stream began its status was already sent), then `data: [DONE]`."""
    event = first
    try:
        while True:
            if "status" in event:  # an error result: its message, not the server's internals
                yield f"data: {json.dumps({'error': event['error'], 'status': event['status']})}\n\n"
                break
            yield f"data: {json.dumps(event)}\n\n"
            try:
                event = await events.__anext__()
            except StopAsyncIteration:
                break
        yield "data: [DONE]\n\n"
    finally:  # a client that went away stops the decoding
        events.cancel()


class RobustnessRoute(Route):
    """POST /v1/attack/{model} and /v1/defend/{model}: the same path, their own schema, checks,
    response and metrics."""

    scope = "attack"  # attacks and defenses alike

    def __init__(self, endpoint: str, models, call, metrics, timeout_s, keys, max_body_bytes):
        super().__init__(models, call, metrics, timeout_s, keys, max_body_bytes)
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
    schema, what, scope = ExplainRequest, "explanation", "explain"

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
                 request_timeout_s: float = 120.0, keys: list[KeyEntry] | None = None, auth: bool = True,
                 max_body_bytes: int = 8 << 20, storage_uri: str | None = None, followed: tuple = (),
                 watch_s: float = 2.0, pending: dict[str, dict] | None = None):
        # name -> {"summary", "config", "endpoints"}: generate (a ModelServer each), attack and
        # defend (the one RobustnessServer deployment), explain (the one ExplainServer)
        self.models = models
        # The generative models whose servers follow the registry's newest version: their entries
        # (the version /v1/models shows, the config requests are checked against) follow it too.
        self.registry, self.followed = Registry(Storage(storage_uri)) if storage_uri else None, list(followed)
        # Models still training ({name: {"family", "progress"}}): listed, and answered 503 until served.
        self.pending = {n: {**v, "progress": None} for n, v in (pending or {}).items()}
        if self.registry and (self.followed or self.pending) and watch_s > 0:
            watch(watch_s, self._refresh, "refreshing the served models' records")
        self.servers, self.robustness, self.explainer = servers, robustness, explainer
        self.metrics = GatewayMetrics()
        self.keys = KeyStore(keys or [], enabled=auth)
        limits = (self.metrics, request_timeout_s, self.keys, max_body_bytes)

        def serving(endpoint: str) -> dict[str, dict]:
            return {n: m for n, m in models.items() if endpoint in m["endpoints"]}
        self.generate_route = GenerateRoute(serving("generate"), self._generate, self._stream, *limits)
        self.attack_route = RobustnessRoute("attack", serving("attack"), self._attack, *limits)
        self.defend_route = RobustnessRoute("defend", serving("defend"), self._defend, *limits)
        self.explain_route = ExplainRoute(serving("explain"), self._explain, *limits)
        for route in (self.generate_route, self.attack_route, self.defend_route, self.explain_route):
            route.pending = self.pending

    def _refresh(self) -> None:
        if self.pending:
            self._training_progress()
        for name in self.followed:
            entry, newest = self.models[name], self.registry.versions(name)[-1]
            if newest != entry["summary"]["version"]:  # the record's files are read only for a new version
                rec = self.registry.record(f"{name}@{newest}")
                entry.update(summary=served_summary(rec), config=rec.config)  # one dict, shared with the routes

    def _training_progress(self) -> None:
        """The pending models' progress, from the board `genray up` trains them with."""
        import ray

        try:
            board = ray.get_actor(PROGRESS_BOARD, namespace=PROGRESS_NAMESPACE)
            runs = ray.get(board.snapshot.remote(), timeout=5)
        except Exception:  # noqa: BLE001 - no board (trained elsewhere): no progress to show
            return
        for name, entry in self.pending.items():
            if name in runs:
                entry["progress"] = {k: runs[name].get(k) for k in ("epoch", "epochs", "step", "total")}

    def _authorize(self, request: Request, scope: str | None) -> JSONResponse | None:
        try:
            self.keys.authorize(request.headers, scope)
        except AuthError as e:
            return auth_error(e)
        return None

    def _generate(self, model: str, payload: dict):
        return self.servers[model].generate.remote(payload)

    def _stream(self, model: str, payload: dict):
        return self.servers[model].options(stream=True).stream.remote(payload)

    def _attack(self, model: str, payload: dict):
        return self.robustness.attack.remote({**payload, "model": model})

    def _defend(self, model: str, payload: dict):
        return self.robustness.defend.remote({**payload, "model": model})

    def _explain(self, model: str, payload: dict):
        return self.explainer.explain.remote({**payload, "model": model})

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def playground(self):
        """A page to try the models (services/playground.html: static, nothing fetched elsewhere)."""
        return HTMLResponse(PLAYGROUND)

    @api.get("/healthz")
    async def healthz(self):
        return {"status": "ok", "models": len(self.models)}

    @api.get("/v1/models", responses=AUTH_ERRORS)
    async def list_models(self, request: Request):
        denied = self._authorize(request, None)
        if denied:
            return denied
        ready = [{**m["summary"], "endpoints": m["endpoints"], "status": "ready"} for m in self.models.values()]
        return {"models": ready + [{"name": n, "family": p.get("family"), "status": "training",
                                    "progress": p.get("progress"), "endpoints": []}
                                   for n, p in self.pending.items()]}

    @api.get("/metrics", responses=AUTH_ERRORS)
    async def metrics(self, request: Request):
        denied = self._authorize(request, "admin")
        if denied:
            return denied
        body, content_type = self.metrics.render()
        return Response(content=body, media_type=content_type)

    @api.post("/v1/admin/reload", response_model=ReloadResponse, responses=AUTH_ERRORS)
    async def reload(self, request: Request):
        """Serve every followed model's newest published version now (admin scope). A replica
        swaps models between batches: requests already running finish on their version. Other
        replicas of a model pick the version up within the watch interval."""
        denied = self._authorize(request, "admin")
        if denied:
            return denied
        versions = dict(zip(self.followed, await asyncio.gather(
            *(self.servers[n].reload.remote() for n in self.followed))))
        await asyncio.to_thread(self._refresh)
        return ReloadResponse(models=versions)

    @api.post("/v1/generate/{model}", response_model=GenerateResponse, openapi_extra=_body(GenerateRequest),
              responses={**POST_ERRORS, 200: {"content": {"text/event-stream": {}},
                               "description": "JSON, or with stream true server-sent events: data: {\"text\": "
                                              "piece} (music: {\"events\": piece}) ..., data: {\"done\": true, "
                                              "\"sample\": ...}, data: [DONE]"}})
    async def generate(self, model: str, request: Request):
        return await self.generate_route(model, request)

    @api.post("/v1/attack/{model}", response_model=AttackResponse, openapi_extra=_body(AttackRequest),
              responses=POST_ERRORS)
    async def attack(self, model: str, request: Request):
        return await self.attack_route(model, request)

    @api.post("/v1/defend/{model}", response_model=DefendResponse, openapi_extra=_body(DefendRequest),
              responses=POST_ERRORS)
    async def defend(self, model: str, request: Request):
        return await self.defend_route(model, request)

    @api.post("/v1/explain/{model}", response_model=ExplainResponse, openapi_extra=_body(ExplainRequest),
              responses={**POST_ERRORS, 200: {"content": {"image/png": {}},
                                              "description": "JSON, or the picture with format png"}})
    async def explain(self, model: str, request: Request):
        return await self.explain_route(model, request)
