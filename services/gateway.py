"""The gateway: the FastAPI ingress at the service's root. It answers everything but a served
model's own generation path (POST /v1/generate/{model} goes straight from Serve's proxy to that
model's application): every capability's route, pinned versions, models still training,
unknown models, the model list, reloads, the playground, and /metrics, where its own metrics and
those the model replicas push to its MetricsBoard are merged.

    POST /v1/generate/{model}@{version}
    POST /v1/{capability}/{model} (or /v1/{capability}): one route per spec of services/capabilities/
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
from genray.services.auth import AuthError, KeyEntry, KeyStore
from genray.services.following import served_summary, watch
from genray.services.metrics import METRICS_NAMESPACE, MetricsBoard, ServiceMetrics, merge
from genray.services.routes import CapabilityRoute, GenerateRoute, auth_error, json_error
from genray.services.schemas import AUTH_ERRORS, POST_ERRORS, GenerateRequest, GenerateResponse, ReloadResponse
from genray.services.spec import SPECS, Capability

API_VERSION = "2.0.0"  # 2: one vocabulary across the capabilities (README: "API 2")
PLAYGROUND = (Path(__file__).parent / "playground.html").read_text()


def model_app_name(gateway_app: str, model: str) -> str:
    """The Serve application of a model's own generation route."""
    return f"{gateway_app}-{model}"


api = FastAPI(title="genray", version=API_VERSION,
              description="Generation, attacks, defenses, explanations and applications of genray registry models")


def _body(schema: type[BaseModel]) -> dict:
    # The body is parsed by the route rather than by FastAPI (so that every outcome is counted):
    # the OpenAPI document gets its schema from here.
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": schema.model_json_schema()}}}}


def _capability_route(spec: Capability) -> None:
    """POST /v1/{name}/{model}, or /v1/{name} for a capability without a model in its path, on the
    gateway, documented from the spec."""
    responses = {**POST_ERRORS}
    if spec.media:
        responses[200] = {"content": {m: {} for m in spec.media}, "description": f"JSON, or {', '.join(spec.media)}"}
    if spec.in_path:
        async def endpoint(self, model: str, request: Request):
            return await self.answer(spec.name, model, request)
    else:
        async def endpoint(self, request: Request):
            return await self.answer(spec.name, next(iter(spec.builtins)), request)
    # serve.ingress binds the routes whose endpoint's qualified name is one of the class's methods.
    endpoint.__name__, endpoint.__qualname__ = spec.name, f"Gateway.{spec.name}"
    path = f"/v1/{spec.name}/{{model}}" if spec.in_path else f"/v1/{spec.name}"
    api.post(path, response_model=spec.response, openapi_extra=_body(spec.request), responses=responses,
             description=spec.summary, name=spec.name)(endpoint)


for _spec in SPECS.values():
    _capability_route(_spec)


@serve.deployment
@serve.ingress(api)
class Gateway:
    def __init__(self, models: dict[str, dict], servers: tuple = (), deployments: dict | None = None,
                 request_timeout_s: float = 120.0, keys: list[KeyEntry] | None = None, auth: bool = True,
                 max_body_bytes: int = 8 << 20, storage_uri: str | None = None, followed: tuple = (),
                 watch_s: float = 2.0, pending: dict[str, dict] | None = None, metrics_board: str | None = None):
        # name -> {"summary", "config", "endpoints"}: generate (a ModelServer each, in an application
        # of its own) and each capability's deployment (`deployments`: capability -> handle).
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
        self.metrics = ServiceMetrics(SPECS.values())
        self.board_name = metrics_board
        self.board = self._metrics_board() if metrics_board else None
        self.keys = KeyStore(keys or [], enabled=auth)
        limits = (self.metrics, request_timeout_s, self.keys, max_body_bytes)

        def serving(endpoint: str) -> dict[str, dict]:
            return {n: m for n, m in models.items() if endpoint in m["endpoints"]}
        self.generate_route = GenerateRoute(serving("generate"), self._generate, self._stream, *limits)
        # A route per spec; one whose deployment was left out (ServeOptions.extras) still tells a
        # model in training from an unknown one.
        self.deployed, self.routes = set(deployments or {}), {}
        for name, spec in SPECS.items():
            handle = (deployments or {}).get(name)
            served = {**{n: dict(v) for n, v in spec.builtins.items()}, **serving(name)} if handle else {}
            self.routes[name] = CapabilityRoute(
                spec, served, lambda model, req, h=handle, c=name: h.run.remote(c, model, req), *limits)
        # Every route answers a model still training (in its path, or a style network in its body)
        # 503 with Retry-After, not 404.
        for route in (self.generate_route, *self.routes.values()):
            route.pending = self.pending

    async def answer(self, capability: str, model: str, request: Request):
        """A capability's request, through its route."""
        if capability not in self.deployed and model not in self.pending:
            return json_error(404, f"this service was deployed without /v1/{capability}")
        return await self.routes[capability](model, request)

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
