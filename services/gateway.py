"""The gateway: the FastAPI ingress at the service's root. It answers everything but a served
model's own generation path (POST /v1/generate/{model} goes straight from Serve's proxy to that
model's application): attacks, defenses, explanations, pinned versions, models still training,
unknown models, the model list, reloads, the playground, and /metrics, where its own metrics and
those the model replicas push to its MetricsBoard are merged.

    POST /v1/generate/{model}@{version}   POST /v1/attack/{model}   POST /v1/defend/{model}
    POST /v1/explain/{model}   POST /v1/inpaint/{model}   POST /v1/style   POST /v1/compose
    POST /v1/summarize/{model}
    POST /v1/admin/reload
    GET /v1/models   GET /healthz   GET /metrics
"""
# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations (Request)
# after serve.ingress has rebuilt the class, where string annotations no longer resolve.
import asyncio
from pathlib import Path

import ray
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel
from ray import serve
from ray.exceptions import RayActorError

from genray.cluster.progress import PROGRESS_BOARD, PROGRESS_NAMESPACE
from genray.cluster.registry import Registry
from genray.cluster.storage import Storage
from genray.models.explain.catalog import explain_methods
from genray.models.inpaint import inpaint_methods
from genray.models.robustness.catalog import attack_methods, defense_methods
from genray.models.summarize import ASPECTS
from genray.models.summarize import METHODS as SUMMARY_METHODS
from genray.services.auth import AuthError, KeyEntry, KeyStore
from genray.services.following import served_summary, watch
from genray.services.metrics import METRICS_NAMESPACE, GatewayMetrics, MetricsBoard, merge
from genray.services.routes import GenerateRoute, Route, auth_error, json_error
from genray.services.schemas import (
    AUTH_ERRORS,
    POST_ERRORS,
    AttackRequest,
    AttackResponse,
    ComposeRequest,
    ComposeResponse,
    DefendRequest,
    DefendResponse,
    ExplainRequest,
    ExplainResponse,
    GenerateRequest,
    GenerateResponse,
    InpaintRequest,
    InpaintResponse,
    ReloadResponse,
    StyleRequest,
    StyleResponse,
    SummarizeRequest,
    SummarizeResponse,
    check_attack,
    check_defense,
    check_explain,
    check_inpaint,
    check_style,
    check_summarize,
)

PLAYGROUND = (Path(__file__).parent / "playground.html").read_text()


def model_app_name(gateway_app: str, model: str) -> str:
    """The Serve application of a model's own generation route."""
    return f"{gateway_app}-{model}"


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


class InpaintRoute(Route):
    """POST /v1/inpaint/{model}: a VAE's or flow's completions of an image's hidden pixels."""
    schema, what = InpaintRequest, "inpainting"

    def check(self, req, entry):
        return check_inpaint(req, entry["config"])

    def respond(self, model, entry, req, result):
        return InpaintResponse(model=model, version=entry["summary"]["version"], **result)

    def record(self, model, req, status, seconds):
        entry = self.models.get(model)
        methods = inpaint_methods(entry["config"]) if entry else ()
        method = (req.method or methods[0]) if req is not None and entry else None
        self.metrics.inpaint_request(model, method if method in methods else "_invalid", status, seconds)


class SummarizeRoute(Route):
    """POST /v1/summarize/{model}: a registry summarizer or a built-in extractive method."""
    schema, what = SummarizeRequest, "summary"

    def check(self, req, entry):
        return check_summarize(req, entry["config"])

    def respond(self, model, entry, req, result):
        return SummarizeResponse(model=model, aspect=req.aspect, **result)

    def record(self, model, req, status, seconds):
        aspect = req.aspect if req is not None and req.aspect in ASPECTS else "_invalid"
        self.metrics.summarize_request(model, aspect, status, seconds)


class ComposeRoute(Route):
    """POST /v1/compose: the composer's own schema and metrics; no model in the path."""
    schema, what, name = ComposeRequest, "composition", "theory"

    def __init__(self, call, metrics, timeout_s, keys, max_body_bytes):
        super().__init__({self.name: {}}, call, metrics, timeout_s, keys, max_body_bytes)

    def respond(self, model, entry, req, result):
        return ComposeResponse(**result)

    def record(self, model, req, status, seconds):
        self.metrics.compose_request(status, seconds)


class StyleRoute(ComposeRoute):
    """POST /v1/style: style transfer's own schema and metrics; no model in the path, a style
    network (when one is asked for) in the body."""
    schema, what, name = StyleRequest, "style transfer", "random-features"

    def __init__(self, networks, *args):
        super().__init__(*args)
        self.networks = networks

    def body_model(self, req):
        return req.model

    def unknown(self, req):
        if req.model is not None and req.model not in self.networks:
            return f"unknown style network {req.model!r}; served here: {sorted(self.networks)}"
        return None

    def check(self, req, entry):
        return check_style(req, entry)

    def respond(self, model, entry, req, result):
        return StyleResponse(**result)

    def record(self, model, req, status, seconds):
        self.metrics.style_request(status, seconds)


api = FastAPI(title="genray", description="Generation, attacks, defenses and explanations of genray registry models")


def _body(schema: type[BaseModel]) -> dict:
    # The body is parsed by the route rather than by FastAPI (so that every outcome is counted):
    # the OpenAPI document gets its schema from here.
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": schema.model_json_schema()}}}}


@serve.deployment
@serve.ingress(api)
class Gateway:
    def __init__(self, models: dict[str, dict], servers: tuple = (), robustness=None, explainer=None,
                 request_timeout_s: float = 120.0, keys: list[KeyEntry] | None = None, auth: bool = True,
                 max_body_bytes: int = 8 << 20, storage_uri: str | None = None, followed: tuple = (),
                 watch_s: float = 2.0, pending: dict[str, dict] | None = None, metrics_board: str | None = None,
                 composer=None, inpainter=None, stylist=None, summarizer=None):
        # name -> {"summary", "config", "endpoints"}: generate (a ModelServer each, in an
        # application of its own), attack and defend (the one RobustnessServer deployment),
        # explain (the one ExplainServer)
        self.models = models
        # The generative models whose servers follow the registry's newest version: their entries
        # (the version /v1/models shows, the config requests are checked against) follow it too.
        self.registry, self.followed = Registry(Storage(storage_uri)) if storage_uri else None, list(followed)
        # Models still training ({name: {"family", "progress"}}): listed, and answered 503 until served.
        self.pending = {n: {**v, "progress": None} for n, v in (pending or {}).items()}
        if self.registry and (self.followed or self.pending) and watch_s > 0:
            watch(watch_s, self._refresh, "refreshing the served models' records")
        app = serve.get_replica_context().app_name
        self.servers = {n: serve.get_deployment_handle(f"model-{n}", model_app_name(app, n)) for n in servers}
        self.robustness, self.explainer = robustness, explainer
        self.metrics = GatewayMetrics()
        self.board_name = metrics_board
        self.board = self._metrics_board() if metrics_board else None
        self.keys = KeyStore(keys or [], enabled=auth)
        limits = (self.metrics, request_timeout_s, self.keys, max_body_bytes)

        def serving(endpoint: str) -> dict[str, dict]:
            return {n: m for n, m in models.items() if endpoint in m["endpoints"]}
        self.generate_route = GenerateRoute(serving("generate"), self._generate, self._stream, *limits)
        self.attack_route = RobustnessRoute("attack", serving("attack"), self._attack, *limits)
        self.defend_route = RobustnessRoute("defend", serving("defend"), self._defend, *limits)
        self.explain_route = ExplainRoute(serving("explain"), self._explain, *limits)
        self.composer, self.inpainter, self.stylist = composer, inpainter, stylist
        self.style_route = StyleRoute(serving("style"), lambda _, payload: stylist.style.remote(payload), *limits)
        self.inpaint_route = InpaintRoute(serving("inpaint"), self._inpaint, *limits)
        self.compose_route = ComposeRoute(lambda _, payload: composer.compose.remote(payload), *limits)
        # The built-in extractive methods, and the registry's summarizers.
        summarizers = {**{m: {"config": {"method": m}} for m in SUMMARY_METHODS}, **serving("summarize")} \
            if summarizer is not None else {}
        self.summarize_route = SummarizeRoute(
            summarizers, lambda name, payload: summarizer.summarize.remote({**payload, "model": name}), *limits)
        # Every route with a model (in its path, or a style network in its body) answers a model
        # still training 503 with Retry-After, not 404.
        for route in (self.generate_route, self.attack_route, self.defend_route, self.explain_route,
                      self.inpaint_route, self.summarize_route, self.style_route):
            route.pending = self.pending

    def _refresh(self) -> None:
        if self.pending:
            self._training_progress()
        for name in self.followed:
            entry, newest = self.models[name], self.registry.versions(name)[-1]
            if newest != entry["summary"]["version"]:  # the record's files are read only for a new version
                rec = self.registry.record(f"{name}@{newest}")
                entry.update(summary=served_summary(rec), config=rec.config)  # one dict, shared with the routes

    def _metrics_board(self):
        # Owned by this replica: it goes with the gateway, and the model replicas' next pushes
        # (cumulative) fill a new one.
        return MetricsBoard.options(name=self.board_name, namespace=METRICS_NAMESPACE, get_if_exists=True).remote()

    def _training_progress(self) -> None:
        """The pending models' progress, from the board `genray up` trains them with."""
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

    def _inpaint(self, model: str, payload: dict):
        return self.inpainter.inpaint.remote({**payload, "model": model})

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
        if self.board is not None:
            try:
                body = merge([body, *await self.board.texts.remote()])
            except RayActorError:  # the board went with a replaced gateway replica: make this one's
                self.board = self._metrics_board()
                body = merge([body, *await self.board.texts.remote()])
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

    @api.post("/v1/compose", response_model=ComposeResponse, openapi_extra=_body(ComposeRequest),
              responses={k: v for k, v in POST_ERRORS.items() if k != 404})
    async def compose(self, request: Request):
        """A four-part chorale in a key, or a harmonisation of a melody (generate scope)."""
        if self.composer is None:
            return json_error(404, "this service was deployed without the composer")
        return await self.compose_route(ComposeRoute.name, request)

    @api.post("/v1/inpaint/{model}", response_model=InpaintResponse, openapi_extra=_body(InpaintRequest),
              responses=POST_ERRORS)
    async def inpaint(self, model: str, request: Request):
        """Fill the hidden pixels of an image with a VAE or flow model (generate scope)."""
        return await self.inpaint_route(model, request)

    @api.post("/v1/style", response_model=StyleResponse, openapi_extra=_body(StyleRequest),
              responses={k: v for k, v in POST_ERRORS.items() if k != 404})
    async def style(self, request: Request):
        """A photograph redrawn in another image's texture statistics (generate scope)."""
        if self.stylist is None:
            return json_error(404, "this service was deployed without style transfer")
        return await self.style_route(StyleRoute.name, request)

    @api.post("/v1/summarize/{model}", response_model=SummarizeResponse, openapi_extra=_body(SummarizeRequest),
              responses=POST_ERRORS)
    async def summarize(self, model: str, request: Request):
        """One aspect of a paper, by a built-in method (lead | random | textrank | lexrank) or a registry
        summarizer (generate scope)."""
        return await self.summarize_route(model, request)

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
