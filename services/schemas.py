"""Request and response bodies of the HTTP API, and the per-model checks pydantic cannot do alone."""
from __future__ import annotations

from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from models.base import family_class
from models.codecs.text import CharVocab


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: StrictInt = Field(1, ge=1, le=64, description="number of samples")
    seed: Optional[StrictInt] = Field(None, ge=0, lt=2**63, description="same seed, same samples")
    temperature: Union[StrictFloat, StrictInt] = Field(1.0, gt=0, le=100, description="sampling temperature")
    prompt: Optional[StrictStr] = Field(None, max_length=8192, description="text to continue")
    max_tokens: StrictInt = Field(256, ge=1, le=2048, description="symbols to generate")
    top_k: Optional[StrictInt] = Field(None, ge=1, description="sample among the k most likely symbols")
    label: Optional[StrictInt] = Field(None, ge=0, description="class to generate (class-conditional models)")


class GenerateResponse(BaseModel):
    model: str
    version: int
    samples: list[Any]


def field_error(field: str, msg: str) -> dict:
    """One entry of a 422 body, shaped like FastAPI's own validation errors."""
    return {"loc": ["body", field], "msg": msg, "type": "value_error"}


def check_applies(req: GenerateRequest, config: dict) -> list[dict]:
    """Errors for fields the model cannot use, or values outside what this model accepts."""
    cls = family_class(config["family"])
    errors = [field_error(f, f"field {f!r} does not apply to {cls.family} models ({cls.modality}); "
                             f"accepted: {sorted(cls.sample_options | {'n'})}")
              for f in sorted(req.model_fields_set - cls.sample_options - {"n"})]
    if req.prompt and "vocab" in config:
        bad = CharVocab(config["vocab"]).unknown(req.prompt)
        if bad:
            errors.append(field_error("prompt", f"characters not in the model's vocabulary: {''.join(bad)!r}"))
    if req.label is not None and "label" in cls.sample_options:
        classes = config.get("num_classes", 0)
        if not classes:
            errors.append(field_error("label", "this model is not class-conditional"))
        elif req.label >= classes:
            errors.append(field_error("label", f"label must be in [0, {classes - 1}]"))
    return errors
