"""POST /v1/infill/{model}: text infilling with a character LM. The text's gap (a run of two or
more underscores) is filled by continuations of its left side, ranked by the model's probability
of the whole text, so the right side decides among them (models/inpaint/text.py)."""
from __future__ import annotations

import re
from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from genray.models.catalog import family_class
from genray.models.errors import OptionError
from genray.models.inpaint.text import MAX_CANDIDATES, MAX_LENGTH, infill
from genray.services.schemas import Answer, Number, Seed, field_error
from genray.services.spec import Capability, Limits

GAP = re.compile(r"_{2,}")


class InfillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field(..., min_length=2, max_length=2048, description="a text with one gap: a run of two or "
                                                                           "more underscores, e.g. 'To be, or ___ "
                                                                           "to be'")
    length: Optional[StrictInt] = Field(None, ge=1, le=MAX_LENGTH, description="characters to fill (default: the "
                                                                               "gap's length)")
    candidates: StrictInt = Field(32, ge=1, le=MAX_CANDIDATES, description="fills drawn from the left side")
    top: StrictInt = Field(5, ge=1, le=32, description="fills answered, best first")
    temperature: Number = Field(1.0, gt=0, le=100, description="the drafts' sampling temperature")
    seed: Seed = None


class Fill(BaseModel):
    fill: str = Field(..., description="the characters in the gap")
    text: str = Field(..., description="the whole text with the gap filled")
    log_prob: float = Field(..., description="log p(text) under the model, in nats")


class InfillResponse(Answer):
    fills: list[Fill] = Field(..., description="distinct fills, most probable first")


def check(req: InfillRequest, config: dict) -> list[dict]:
    gaps = GAP.findall(req.text)
    if len(gaps) != 1:
        return [field_error("text", f"the text needs exactly one gap (a run of two or more underscores), found "
                                    f"{len(gaps)}")]
    return []


def run(job, req: InfillRequest) -> dict:
    model, _ = job.load()
    gap = GAP.search(req.text)
    left, right = req.text[:gap.start()], req.text[gap.end():]
    try:
        ranked = infill(model, left, right, length=req.length or len(gap.group()), candidates=req.candidates,
                        seed=req.seed, temperature=req.temperature, top=req.top)
    except OptionError as e:  # the two sides are the request's text
        e.field = "text" if e.field in ("left", "right") else e.field
        raise
    return {"fills": [{"fill": f, "text": left + f + right, "log_prob": p} for f, p in ranked]}


SPEC = Capability(
    name="infill", summary="Fill the gap in a text with a character language model (generate scope).",
    request=InfillRequest, response=InfillResponse, run=run, check=check,
    serves=lambda rec: rec.kind == "generative" and family_class(rec.config["family"]).modality_of(rec.config)
    == "text",
    # A few dozen drafts and as many scoring passes of a small LM each.
    limits=Limits(max_ongoing=2, max_queued=8, target_ongoing=2),
)
