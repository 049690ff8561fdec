"""Request and response bodies of the HTTP API, and the per-model checks pydantic cannot do alone."""
from __future__ import annotations

from typing import Annotated, Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from genray.models import modalities
from genray.models.registry import family_class

Number = Annotated[Union[StrictFloat, StrictInt], Field(allow_inf_nan=False)]


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: StrictInt = Field(1, ge=1, le=64, description="number of samples")
    seed: Optional[StrictInt] = Field(None, ge=0, lt=2**63, description="same seed, same samples")
    temperature: Union[StrictFloat, StrictInt] = Field(1.0, gt=0, le=100, description="sampling temperature")
    prompt: Optional[Union[StrictStr, list[Number]]] = Field(
        None, max_length=8192, description="what to continue: text; music as events ('G4/1 A4/0.5 R/1'); "
                                           "a series as a list of numbers")
    max_tokens: StrictInt = Field(256, ge=1, le=2048, description="symbols to generate")
    top_k: Optional[StrictInt] = Field(None, ge=1, description="sample among the k most likely symbols")
    label: Optional[StrictInt] = Field(None, ge=0, description="class to generate (class-conditional models)")
    wav: StrictBool = Field(False, description="music: also return each sample rendered as a WAV file")


class GenerateResponse(BaseModel):
    model: str
    version: int
    samples: list[Any]


def field_error(field: str, msg: str) -> dict:
    """One entry of a 422 body, shaped like FastAPI's own validation errors."""
    return {"loc": ["body", field], "msg": msg, "type": "value_error"}


COMMON_FIELDS = frozenset({"n", "seed"})  # request fields every model takes


def accepted_fields(config: dict) -> frozenset[str]:
    """The request fields a model takes: n and seed, its family's sampling options, and its
    modality's own (music: wav)."""
    cls = family_class(config["family"])
    return COMMON_FIELDS | cls.sample_options | modalities.get(cls.modality_of(config)).request_fields


def check_applies(req: GenerateRequest, config: dict) -> list[dict]:
    """Errors for fields the model cannot use, or values outside what this model accepts."""
    cls = family_class(config["family"])
    modality = cls.modality_of(config)
    accepted = accepted_fields(config)
    errors = [field_error(f, f"field {f!r} does not apply to {cls.family} models ({modality}); "
                             f"accepted: {sorted(accepted)}")
              for f in sorted(req.model_fields_set - accepted)]
    fields = {f: getattr(req, f) for f in req.model_fields_set & accepted}
    errors += [field_error(f, msg) for f, msg in modalities.get(modality).check(fields, config)]
    return errors
