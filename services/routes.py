"""A POST endpoint without the web framework, shared by the gateway and the per-model ingresses:
authorise, read, parse, check, call, answer, and count every outcome."""
# No `from __future__ import annotations`: FastAPI reads annotations of the ingress classes that
# use these helpers.
import asyncio
import json
import logging
import math
import time
from typing import Any, Callable

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.exceptions import BackPressureError

from genray.services.auth import AuthError, KeyStore
from genray.services.metrics import ServiceMetrics
from genray.services.schemas import GenerateRequest, GenerateResponse, check_applies
from genray.services.spec import INVALID, Capability, Failure, Raw

log = logging.getLogger("ray.serve")
Call = Callable[[str, Any], Any]  # (model name, request) -> an awaitable result with cancel()


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

    def __init__(self, models: dict[str, dict], call: Call, metrics: ServiceMetrics, timeout_s: float,
                 keys: KeyStore, max_body_bytes: int):
        self.models, self.call, self.metrics, self.timeout = models, call, metrics, timeout_s
        self.keys, self.max_body = keys, max_body_bytes

    async def __call__(self, model: str, request: Request):
        t0, req = time.perf_counter(), None
        name = model.partition("@")[0] if self.pins else model
        try:
            self.keys.authorize(request.headers, self.scope)
            body = await read_body(request, self.max_body)
            status, resp, req, name = await self._handle(model, body)
        except AuthError as e:
            status, resp = e.status, auth_error(e)
        except BodyTooLarge:
            status, resp = 413, json_error(413, f"the request body is over {self.max_body} bytes")
        except Exception:
            log.exception("%s for %r failed", self.what, model)
            status, resp = 500, json_error(500, "internal error; the server's log has the details")
        self.record(name if name in self.models else "_unknown", req, status, time.perf_counter() - t0)
        return resp

    def check(self, req, entry: dict) -> list[dict]:
        """422 entries for a parsed request that this model cannot take."""
        return []

    def payload(self, req):
        return req

    async def invoke(self, model: str, req) -> dict:
        response = self.call(model, self.payload(req))
        try:
            return await response
        except asyncio.CancelledError:  # timed out, or the client went away: stop the replica's work too
            response.cancel()
            raise

    def respond(self, model: str, entry: dict, req, result: dict):
        raise NotImplementedError

    def body_model(self, req) -> str | None:
        """A registry model the request names in its body (a style network), if any."""
        return None

    def still_training(self, name: str) -> tuple[int, object]:
        """503 with Retry-After for a model `genray up` is still training."""
        progress = self.pending[name].get("progress") or {}
        at = f" (epoch {progress['epoch']}/{progress['epochs']})" if progress.get("epoch") else ""
        return 503, json_error(503, f"model {name!r} is still training{at}; retry later", retry_after=15)

    def record(self, model: str, req, status: int, seconds: float) -> None:
        raise NotImplementedError

    async def _handle(self, model: str, body: bytes):
        """(status, response, the parsed request or None, the served name it is counted under)."""
        name, _, pin = model.partition("@") if self.pins else (model, "", "")
        entry = self.models.get(name)
        if entry is None and name in self.pending:
            return *self.still_training(name), None, name
        if entry is None or (pin and not pin.isdigit()):
            return 404, json_error(404, f"unknown model {model!r}; served here: {sorted(self.models)}"), None, name
        try:
            req = self.schema.model_validate_json(body or b"{}")
        except ValidationError as e:
            return 422, validation_error(e), None, name
        if pin:
            req = req.model_copy(update={"version": int(pin)})
        named = self.body_model(req)
        if named is not None:
            if named in self.pending:
                return *self.still_training(named), req, named
            if named not in self.models:
                return 404, json_error(404, f"unknown model {named!r}; served here: {sorted(self.models)}"), req, name
            name, entry = named, self.models[named]
        errors = self.check(req, entry)
        if errors:
            return 422, json_error(422, errors), req, name
        try:
            result = await asyncio.wait_for(self.invoke(name, req), self.timeout)
        except BackPressureError:
            return 503, json_error(503, f"model {name!r} is overloaded; retry later", retry_after=1), req, name
        except (RayActorError, ActorUnavailableError):  # a replica died mid-request: Serve replaces it
            return 503, json_error(503, f"model {name!r} lost a replica; retry", retry_after=1), req, name
        except asyncio.TimeoutError:
            return 504, json_error(504, f"model {name!r} did not answer within {self.timeout:g} s"), req, name
        if isinstance(result, Failure):
            return result.status, json_error(result.status, result.detail()), req, name
        return 200, self.respond(name, entry, req, result), req, name


class CapabilityRoute(Route):
    """POST /v1/{capability}/{model} (or /v1/{capability}) for a spec of services/capabilities/:
    its schema, checks, scope and metrics; a model named in the body (a style network) is
    answered for as the path's model is."""

    def __init__(self, spec: Capability, models: dict[str, dict], call: Call, metrics: ServiceMetrics,
                 timeout_s: float, keys: KeyStore, max_body_bytes: int):
        super().__init__(models, call, metrics, timeout_s, keys, max_body_bytes)
        self.spec, self.schema, self.scope, self.what = spec, spec.request, spec.scope, spec.name

    def check(self, req, entry):
        return self.spec.check(req, entry["config"])

    def body_model(self, req):
        return getattr(req, self.spec.body_model) if self.spec.body_model else None

    def method(self, model: str, req) -> str:
        entry = self.models.get(model)
        return self.spec.method(req, entry["config"]) if entry and req is not None else INVALID

    def respond(self, model, entry, req, result):
        if isinstance(result, Raw):
            return Response(content=result.content, media_type=result.media_type)
        self.metrics.observe(self.spec, model, self.method(model, req), req, result)
        return self.spec.response(**{"model": model, "version": entry.get("summary", {}).get("version"), **result})

    def record(self, model, req, status, seconds):
        self.metrics.request(self.spec.name, model, self.method(model, req), status, seconds)


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
            return _failure(await super().invoke(model, req))
        events = self.stream(model, self.payload(req))
        try:
            first = await events.__anext__()  # an error, or the first piece: the status is known
        except asyncio.CancelledError:
            events.cancel()
            raise
        return _failure(first) if "error" in first else {"events": events, "first": first}

    def respond(self, model, entry, req, result):
        if "events" in result:
            self.metrics.generated(model, 1, None)
            return StreamingResponse(_sse(result["first"], result["events"]), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        batch = result["batch_size"] if result["first_in_batch"] else None  # counted once per batch
        self.metrics.generated(model, len(result["samples"]), batch)
        return GenerateResponse(model=model, version=result["version"], samples=result["samples"])

    def record(self, model, req, status, seconds):
        method = "stream" if req is not None and req.stream else "json"
        self.metrics.request("generate", model, method, status, seconds)


def _failure(result: dict):
    """A model server's error result (its batches and streams carry dicts) as the routes' Failure."""
    return Failure(result["status"], result["error"], result.get("field")) if "error" in result else result


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
