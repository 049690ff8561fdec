"""The summarizers behind POST /v1/summarize/{model}: the built-in extractive methods (lead,
random, sumy's TextRank and LexRank) and the registry's summarizers (a sentence scorer, or a
pointer-generator with the extractor it names), on a deployment of their own with a short queue."""
from __future__ import annotations

import asyncio
import time

import torch
from ray import serve

from genray.models.errors import OptionError
from genray.models.summarize import resolve, split_sentences, summarize
from genray.services.generate import error_result
from genray.services.workbench import Workbench

MAX_SENTENCES = 1_000  # sentences of one document, after splitting its text


def run_summarize(bench: Workbench, name: str, req: dict) -> dict:
    """The answer to a SummarizeRequest's fields for the served summarizer `name` (a built-in
    method or a registry model), or an error result."""
    t0 = time.perf_counter()
    try:
        sentences = req.get("sentences") or split_sentences(req["text"])
        if len(sentences) > MAX_SENTENCES:
            raise OptionError(f"the text has {len(sentences)} sentences; at most {MAX_SENTENCES}", "text")
        method, version, extractor = resolve(name, lambda n: bench.model(bench.refs.get(n, n)))
        max_sentences = req.get("max_sentences") or (3 if req.get("max_tokens") is None else None)
        out = summarize(method, sentences, req.get("aspect", "challenge"), max_sentences, req.get("max_tokens"),
                        req.get("seed", 0), extractor)
    except Exception as e:  # noqa: BLE001 - every failure becomes this caller's error result
        return error_result(e)
    return {**out, "version": version, "seconds": time.perf_counter() - t0}


@serve.deployment
class SummarizeServer:
    def __init__(self, storage_uri: str, refs: dict[str, str], threads: int = 1):
        torch.set_num_threads(threads)
        self.bench = Workbench(storage_uri, refs)

    async def summarize(self, request: dict) -> dict:
        return await asyncio.to_thread(run_summarize, self.bench, request["model"], request)
