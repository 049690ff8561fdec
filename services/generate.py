"""The model server behind /v1/generate: one deployment per registry model, whose requests
are batched into one model.sample call (the batch size counts samples, not requests).

A request is checked against the trained model before it joins a batch, and a failure inside a
batch is retried request by request, so one caller's bad input never fails the requests batched
with it; callers get the model's own message, never Ray's internals (those go to the log)."""
from __future__ import annotations

import logging

import torch
from ray import serve

from genray.cluster.registry import Registry
from genray.cluster.storage import Storage
from genray.models import modalities
from genray.models.base import GenerativeModel, seeded
from genray.models.errors import InputError
from genray.services.schemas import GenerateRequest

log = logging.getLogger("ray.serve")
INTERNAL = "internal error while generating; the server's log has the details"


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


def _sample_all(model: GenerativeModel, requests: list[dict]) -> list[dict]:
    # Rows of one request share its generator, so its samples depend on its seed alone, not on
    # which other requests were batched with it.
    per_row = [r for r in requests for _ in range(r["n"])]
    defaults = {k: GenerateRequest.model_fields[k].default for k in model.sample_options}
    opts = {k: [r.get(k, d) for r in per_row] for k, d in defaults.items()}
    gens = [g for r in requests for g in [seeded(r.get("seed"))] * r["n"]]
    modality = modalities.get(model.modality)
    samples = [modality.to_json(s, r) for s, r in zip(model.sample(len(gens), generator=gens, **opts), per_row)]
    out, i = [], 0
    for j, r in enumerate(requests):
        out.append({"samples": samples[i: i + r["n"]], "batch_size": len(gens), "first_in_batch": j == 0})
        i += r["n"]
    return out


def generate_batch(model: GenerativeModel, requests: list[dict]) -> list[dict]:
    """One result per request: {"samples", "batch_size", "first_in_batch"}, or {"error",
    "field", "status"} for a request that failed."""
    try:
        return _sample_all(model, requests)
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


@serve.deployment
class ModelServer:
    """Holds one registry model and generates for batches of requests."""

    def __init__(self, storage_uri: str, ref: str, max_batch_size: int, batch_wait_timeout_s: float,
                 threads: int = 1, device: str = "cpu"):
        self.model, self.record = Registry(Storage(storage_uri)).load(ref)
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"{ref}: the replica was given a GPU but torch sees no CUDA device")
        self.model.to(device)
        torch.set_num_threads(threads)
        self._batch.set_max_batch_size(max_batch_size)
        self._batch.set_batch_wait_timeout_s(batch_wait_timeout_s)

    async def generate(self, request: dict) -> dict:
        error = check_request(self.model, request)
        return error or await self._batch(request)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005, batch_size_fn=lambda reqs: sum(r["n"] for r in reqs))
    async def _batch(self, requests: list[dict]) -> list[dict]:
        return generate_batch(self.model, requests)
