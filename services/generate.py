"""The model server behind /v1/generate/{model}: one Serve application per registry model,
whose ingress authorises, validates and batches its requests itself (one hop from Serve's proxy
to the replica that samples), then encodes and answers. Requests are batched into one
model.sample call (the batch size counts samples, not requests).

A request is checked against the trained model before it joins a batch, and a failure inside a
batch is retried request by request, so one caller's bad input never fails the requests batched
with it; callers get the model's own message, never Ray's internals (those go to the log)."""

import asyncio
import logging
import threading
import time
from collections import OrderedDict

import ray
import torch
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from ray import serve

from genray.cluster.registry import Registry, RegistryError
from genray.cluster.storage import Storage
from genray.models import modalities
from genray.models.base import GenerativeModel, seeded
from genray.models.errors import Cancelled, InputError
from genray.services.auth import KeyEntry, KeyStore
from genray.services.following import served_summary, watch
from genray.services.metrics import METRICS_NAMESPACE, METRICS_PUSH_S, ServiceMetrics
from genray.services.routes import GenerateRoute
from genray.services.schemas import GenerateRequest

log = logging.getLogger("ray.serve")
INTERNAL = "internal error while generating; the server's log has the details"
STREAM_EVERY_S = 0.05  # a streamed request's pieces are sent at most this often


def error_result(e: Exception) -> dict:
    """A failed request's result: the input error's message and field (422), or a bare 500."""
    if isinstance(e, InputError):
        return {"error": str(e), "field": e.field, "status": 422}
    log.error("request failed", exc_info=e)
    return {"error": INTERNAL, "status": 500}


def check_request(model: GenerativeModel, request: dict) -> dict | None:
    """An error result for a request the trained model cannot serve, else None."""
    try:
        model.check_options(**{k: v for k, v in request.items() if k in model.sample_options})
    except Exception as e:  # noqa: BLE001 - every failure becomes this caller's error result
        return error_result(e)
    return None


def _options(model: GenerativeModel, request: dict) -> dict:
    """The request's sampling options, the schema's defaults for those it leaves out."""
    return {k: request.get(k, GenerateRequest.model_fields[k].default) for k in model.sample_options}


def _sample_all(model: GenerativeModel, requests: list[dict], cancel=None,
                timings: dict | None = None) -> list[dict]:
    # Rows of one request share its generator, so its samples depend on its seed alone, not on
    # which other requests were batched with it.
    per_row = [r for r in requests for _ in range(r["n"])]
    opts = {k: [_options(model, r)[k] for r in per_row] for k in model.sample_options}
    gens = [g for r in requests for g in [seeded(r.get("seed"))] * r["n"]]
    modality = modalities.get(model.modality)
    t0 = time.perf_counter()
    drawn = model.sample(len(gens), generator=gens, cancel=cancel, **opts)
    t1 = time.perf_counter()
    samples = [modality.to_json(s, r) for s, r in zip(drawn, per_row)]
    if timings is not None:
        timings["forward_s"] += t1 - t0
        timings["encode_s"] += time.perf_counter() - t1
    out, i = [], 0
    for j, r in enumerate(requests):
        out.append({"samples": samples[i: i + r["n"]], "batch_size": len(gens), "first_in_batch": j == 0})
        i += r["n"]
    return out


def generate_batch(model: GenerativeModel, requests: list[dict], cancel=None,
                   timings: dict | None = None) -> list[dict]:
    """One result per request: {"samples", "batch_size", "first_in_batch"}, or {"error",
    "field", "status"} for a request that failed. cancel() true stops the sampling (every
    caller went away). timings: seconds spent sampling and encoding are added to its
    "forward_s" and "encode_s"."""
    try:
        return _sample_all(model, requests, cancel, timings)
    except Cancelled:
        return [{"error": "cancelled: the caller went away", "status": 499}] * len(requests)
    except Exception as e:  # noqa: BLE001
        if len(requests) == 1:
            return [error_result(e)]
    results = []
    for r in requests:  # run each alone: only the request at fault gets the error
        try:
            results.append(_sample_all(model, [r])[0])
        except Exception as e:  # noqa: BLE001
            results.append(error_result(e))
    return results


class LocalEvents:
    """An async generator of this replica, with the cancel() the routes call on a handle's stream."""

    def __init__(self, events):
        self.events = events

    def __anext__(self):
        return self.events.__anext__()

    def cancel(self) -> None:
        try:
            asyncio.ensure_future(self.events.aclose())
        except RuntimeError:  # no running loop: nothing left to stop
            pass


@serve.deployment
class ModelServer:
    """Holds one registry model, answers POST /v1/generate/{model} itself (keys, limits, schema,
    batching, encoding, metrics), and generates for the gateway's calls (pinned versions).
    Unless started on a pinned version, it follows the registry: a thread looks for a newer
    version every watch_s seconds (and reload() at once), loads it beside the current one and
    swaps it in, so requests already running finish on the version they started with. A request
    may pin an older version ({"version": N}); the last keep_versions versions stay loaded. Its
    metrics go to the gateway's MetricsBoard every METRICS_PUSH_S, off the request path."""

    def __init__(self, storage_uri: str, ref: str, max_batch_size: int, batch_wait_timeout_s: float,
                 threads: int = 1, device: str = "cpu", follow: bool = True, watch_s: float = 2.0,
                 keep_versions: int = 3, keys: list[KeyEntry] | None = None, auth: bool = True,
                 max_body_bytes: int = 8 << 20, request_timeout_s: float = 120.0, metrics_board: str | None = None):
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"{ref}: the replica was given a GPU but torch sees no CUDA device")
        torch.set_num_threads(threads)
        self.registry, self.device, self.keep = Registry(Storage(storage_uri)), device, keep_versions
        model, record = self.registry.load(ref)
        self.name, self.latest = record.name, record.version
        self.loaded: OrderedDict[int, GenerativeModel] = OrderedDict({record.version: model.to(device)})
        self._lock = threading.Lock()
        self._batch.set_max_batch_size(max_batch_size)
        self._batch.set_batch_wait_timeout_s(batch_wait_timeout_s)
        self.cancelled_batches = 0
        # Where a request's time goes inside one replica (benchmarks/serve_throughput.py reads it).
        self.timings = dict.fromkeys(("handler_s", "queued_s", "forward_s", "encode_s", "requests", "batches"), 0.0)
        # What the route checks requests against; it follows the served version.
        self.entry = {"summary": served_summary(record), "config": record.config, "endpoints": ["generate"]}
        self.metrics = ServiceMetrics()
        self.route = GenerateRoute({self.name: self.entry}, self._local_call, self._local_stream, self.metrics,
                                   request_timeout_s, KeyStore(keys or [], enabled=auth), max_body_bytes)
        if follow and watch_s > 0:
            watch(watch_s, self._follow, f"watching {self.name}'s versions")
        if metrics_board:
            self.board_name, self.board = metrics_board, None
            self.source = f"{self.name}:{serve.get_replica_context().replica_id.unique_id}"
            watch(METRICS_PUSH_S, self._push_metrics, "pushing metrics")

    async def __call__(self, request: Request):
        """HTTP at the application's prefix, /v1/generate/{model}, as Serve's proxy hands it over
        (no web framework in between; the gateway's OpenAPI document describes the route)."""
        if request.method != "POST":
            return JSONResponse({"detail": "use POST"}, status_code=405, headers={"Allow": "POST"})
        t0 = time.perf_counter()
        try:
            answer = await self.route(self.name, request)
            if isinstance(answer, BaseModel):  # pydantic's own JSON, rather than Serve's generic encoder
                return Response(answer.model_dump_json(), media_type="application/json")
            return answer
        finally:
            self.timings["handler_s"] += time.perf_counter() - t0
            self.timings["requests"] += 1

    def _local_call(self, model: str, payload: dict):
        return asyncio.ensure_future(self.generate(payload))  # awaitable, and cancel() stops the work

    def _local_stream(self, model: str, payload: dict) -> LocalEvents:
        return LocalEvents(self.stream(payload))

    def _push_metrics(self) -> None:
        if self.board is None:
            try:
                self.board = ray.get_actor(self.board_name, namespace=METRICS_NAMESPACE)
            except ValueError:  # the gateway has not made it yet
                return
        try:
            ray.get(self.board.push.remote(self.source, self.metrics.render()[0]), timeout=10)
        except ray.exceptions.RayActorError:  # the gateway was replaced: find its new board next time
            self.board = None

    @property
    def model(self) -> GenerativeModel:
        return self.loaded[self.latest]

    def _follow(self) -> int:
        newest = self.registry.versions(self.name)[-1]
        if newest > self.latest:
            self._get(newest)
            record = self.registry.record(f"{self.name}@{newest}")
            self.latest = newest  # requests from now on; those running keep their model
            self.entry.update(summary=served_summary(record), config=record.config)
            log.info("%s: now serving version %d", self.name, newest)
        return self.latest

    def _get(self, version: int) -> GenerativeModel:
        """A loaded version (loading it if needed); RegistryError if there is none such."""
        with self._lock:
            if version in self.loaded:
                self.loaded.move_to_end(version)
                return self.loaded[version]
        model, _ = self.registry.load(f"{self.name}@{version}")
        model.to(self.device)
        with self._lock:
            self.loaded[version] = model
            while len(self.loaded) > self.keep:
                oldest = next(v for v in self.loaded if v != self.latest and v != version)
                del self.loaded[oldest]
        return model

    def stats(self) -> dict:
        return {"version": self.latest, "loaded": list(self.loaded), "cancelled_batches": self.cancelled_batches,
                "timings": dict(self.timings)}

    async def reload(self) -> int:
        """Serve the registry's newest version now; returns the version served."""
        return await asyncio.to_thread(self._follow)

    async def _resolve(self, request: dict) -> tuple[int, GenerativeModel | dict]:
        version = request.get("version") or self.latest
        if version in self.loaded:
            return version, self.loaded[version]
        try:
            return version, await asyncio.to_thread(self._get, version)
        except RegistryError:
            return version, {"error": f"model {self.name!r} has no version {version} "
                                      f"(has {self.registry.versions(self.name)})", "status": 404}

    async def generate(self, request: dict) -> dict:
        version, model = await self._resolve(request)
        if isinstance(model, dict):
            return model
        error = check_request(model, request)
        if error:
            return error
        abandoned = threading.Event()
        try:
            return await self._batch({**request, "version": version, "_model": model, "_abandoned": abandoned,
                                      "_t": time.perf_counter()})
        except asyncio.CancelledError:  # the caller timed out or went away: its batch may stop early
            abandoned.set()
            raise

    async def stream(self, request: dict):
        """One sample's continuation as it is decoded: {"text": piece} (text) or {"events": piece}
        (music) about every STREAM_EVERY_S, then {"done": True, "sample": the whole sample,
        "version"}; or one error result. A caller that goes away cancels the decoding at its next
        step."""
        version, model = await self._resolve(request)
        error = model if isinstance(model, dict) else check_request(model, request)
        if error:
            yield error
            return
        opts, vocab = _options(model, request), model.vocab
        prompt = vocab.decode(vocab.encode(opts["prompt"])) if opts.get("prompt") else vocab.decode([])
        key = "text" if isinstance(prompt, str) else "events"
        whole, pending, last = prompt, prompt[:0], time.perf_counter()
        try:
            for step in model.stream(1, generator=seeded(request.get("seed")), **opts):
                for _, piece in step:
                    whole, pending = whole + piece, pending + piece
                if time.perf_counter() - last >= STREAM_EVERY_S:
                    yield {key: pending if key == "text" else " ".join(pending)}
                    pending, last = pending[:0], time.perf_counter()
                await asyncio.sleep(0)  # lets the replica's batches and other streams run between steps
        except Exception as e:  # noqa: BLE001 - the caller gets an error event, the log the details
            yield error_result(e)
            return
        if pending:
            yield {key: pending if key == "text" else " ".join(pending)}
        yield {"done": True, "sample": modalities.get(model.modality).to_json(whole, request), "version": version}

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005, batch_size_fn=lambda reqs: sum(r["n"] for r in reqs))
    async def _batch(self, requests: list[dict]) -> list[dict]:
        # A step-wise decoder runs in a thread, so that the replica's event loop goes on (streams,
        # cancellations) meanwhile; a one-pass sampler (an image model: milliseconds a batch) runs
        # on the loop, where the thread hop would cost more than it frees (measured in
        # benchmarks/serve_throughput.py).
        if any(r["_model"].streams for r in requests):
            return await asyncio.to_thread(self._run, requests)
        return self._run(requests)

    def _run(self, requests: list[dict]) -> list[dict]:
        # Sampling stops once every request of the batch is abandoned.
        def cancel() -> bool:
            if all(r["_abandoned"].is_set() for r in requests):
                self.cancelled_batches += 1
                return True
            return False

        started = time.perf_counter()
        self.timings["queued_s"] += sum(started - r["_t"] for r in requests)
        self.timings["batches"] += 1
        # One model.sample call per version among the batch's requests (nearly always one).
        by_version: dict[int, list[int]] = {}
        for i, r in enumerate(requests):
            by_version.setdefault(r["version"], []).append(i)
        out: list = [None] * len(requests)
        for version, rows in by_version.items():
            group = [requests[i] for i in rows]
            for i, result in zip(rows, generate_batch(group[0]["_model"], group, cancel, self.timings)):
                out[i] = {**result, "version": version}
        return out
