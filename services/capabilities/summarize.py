"""POST /v1/summarize/{model}: one aspect of a paper, by a built-in extractive method (lead, random,
sumy's TextRank and LexRank) or a registry summarizer (a sentence scorer, or a pointer-generator
with the extractor it names); milliseconds to a second a document."""
from __future__ import annotations

import time
from typing import Annotated, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from genray.models.catalog import family_class
from genray.models.errors import OptionError
from genray.models.summarize import ASPECTS, METHODS, resolve, split_sentences, summarize
from genray.services.schemas import Answer, Seed, field_error
from genray.services.spec import INVALID, Capability, Limits

MAX_SENTENCES = 1_000  # sentences of one document, after splitting its text
DEFAULT_SENTENCES = 3  # extractive, when neither max_sentences nor max_tokens is given


class SummarizeRequest(BaseModel):
    """POST /v1/summarize/{model}: one aspect of a paper in a few sentences (extractive) or words
    (abstractive)."""
    model_config = ConfigDict(extra="forbid")

    text: Optional[StrictStr] = Field(None, min_length=1, max_length=200_000,
                                      description="the document as plain text (split into sentences here)")
    sentences: Optional[list[Annotated[StrictStr, Field(min_length=1, max_length=4_000)]]] = Field(
        None, min_length=1, max_length=1_000, description="instead of text, the document's sentences in order")
    aspect: StrictStr = Field("challenge", max_length=16, description="challenge | approach | outcome")
    max_sentences: Optional[StrictInt] = Field(None, ge=1, le=20, description="extractive: sentences kept (default 3)")
    max_tokens: Optional[StrictInt] = Field(None, ge=1, le=400, description="extractive: keep whole sentences up to "
                                                                            "this many words; abstractive: the "
                                                                            "summary's length limit in words")
    seed: Seed = None


class SummarizeResponse(Answer):
    aspect: str
    summary: str
    sentences: Optional[list[int]] = Field(None, description="extractive: the kept sentences' indices, in order")
    source: Optional[list[int]] = Field(None, description="abstractive: the sentences its extractor gave it")
    seconds: float


def check(req: SummarizeRequest, config: dict) -> list[dict]:
    errors = []
    if (req.text is None) == (req.sentences is None):
        errors.append(field_error("text", "give exactly one of 'text' and 'sentences'"))
    if req.aspect not in ASPECTS:
        errors.append(field_error("aspect", f"aspect must be one of {list(ASPECTS)}, got {req.aspect!r}"))
    method = config.get("method")  # a built-in extractive method; else a registry summarizer's config
    abstractive = method is None and family_class(config["family"]).abstractive
    if req.max_sentences is not None and (req.max_tokens is not None or abstractive):
        errors.append(field_error("max_sentences", "give max_sentences or max_tokens, not both" if not abstractive
                                  else "an abstractive model writes words: use max_tokens"))
    if "seed" in req.model_fields_set and method != "random":
        errors.append(field_error("seed", "seed applies to the random method only"))
    return errors


def run(job, req: SummarizeRequest) -> dict:
    t0 = time.perf_counter()
    sentences = req.sentences or split_sentences(req.text)
    if len(sentences) > MAX_SENTENCES:
        raise OptionError(f"the text has {len(sentences)} sentences; at most {MAX_SENTENCES}", "text")
    method, version, extractor = resolve(job.model, lambda n: job.bench.model(job.bench.refs.get(n, n)))
    max_sentences = req.max_sentences or (DEFAULT_SENTENCES if req.max_tokens is None else None)
    out = summarize(method, sentences, req.aspect, max_sentences, req.max_tokens, req.seed, extractor)
    return {**out, "aspect": req.aspect, "version": version, "seconds": time.perf_counter() - t0}


SPEC = Capability(
    name="summarize", summary="One aspect of a paper, by a built-in method (lead | random | textrank | lexrank) or "
                              "a registry summarizer (generate scope).",
    request=SummarizeRequest, response=SummarizeResponse, run=run, check=check,
    serves=lambda rec: rec.kind == "summarizer", builtins={m: {"config": {"method": m}} for m in METHODS},
    method=lambda req, config: req.aspect if req.aspect in ASPECTS else INVALID,
    limits=Limits(max_ongoing=4, max_queued=16, target_ongoing=2),
)
