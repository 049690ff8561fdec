"""Request and response bodies of the HTTP API, and the per-model checks pydantic cannot do alone."""
from __future__ import annotations

from typing import Annotated, Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from genray.models import modalities
from genray.models.catalog import family_class

Number = Annotated[Union[StrictFloat, StrictInt], Field(allow_inf_nan=False)]
MAX_INPUTS = 64  # images per request, at every endpoint that takes several
Png = Annotated[StrictStr, Field(max_length=1_000_000)]
# One range and one rule for every seed in the API.
Seed = Annotated[Optional[StrictInt], Field(ge=0, lt=2**31, description="same seed, same answer; without one, "
                                                                        "each request draws its own")]


class Answer(BaseModel):
    """What every answer starts with: who answered."""
    model: str = Field(..., description="the served model (or built-in method) that answered")
    version: Optional[int] = Field(None, description="its registry version; none for a built-in")


class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: StrictInt = Field(1, ge=1, le=64, description="number of samples")
    seed: Seed = None
    temperature: Union[StrictFloat, StrictInt] = Field(1.0, gt=0, le=100, description="sampling temperature")
    prompt: Optional[Union[StrictStr, list[Number]]] = Field(
        None, max_length=8192, description="what to continue: text; music as events ('G4/1 A4/0.5 R/1'); "
                                           "a series as a list of numbers")
    max_tokens: StrictInt = Field(256, ge=1, le=2048, description="symbols to generate")
    top_k: Optional[StrictInt] = Field(None, ge=1, description="sample among the k most likely symbols")
    top_p: Optional[Union[StrictFloat, StrictInt]] = Field(
        None, gt=0, le=1, description="nucleus sampling: among the most likely symbols whose probability reaches p")
    stop: Optional[list[Annotated[StrictStr, Field(min_length=1, max_length=32)]]] = Field(
        None, min_length=1, max_length=4, description="text: end a sample where one of these strings first "
                                                      "appears (the stop string itself is left out)")
    stream: StrictBool = Field(False, description="symbol models: send the continuation as it is decided, as "
                                                  "server-sent events (one sample at a time: n = 1)")
    label: Optional[StrictInt] = Field(None, ge=0, description="class to generate (class-conditional models)")
    wav: StrictBool = Field(False, description="music: also return each sample rendered as a WAV file")
    version: Optional[StrictInt] = Field(None, ge=1, description="a published version to generate from "
                                                                 "(default: the newest); or POST .../NAME@VERSION")


class GenerateResponse(Answer):
    samples: list[Any]


class ReloadResponse(BaseModel):
    models: dict[str, int] = Field(..., description="each model that follows the registry: the version it serves")


class FieldError(BaseModel):
    loc: list[Union[str, int]] = Field(..., description='where: ["body", FIELD, ...]')
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error's body: a message, or for bad input (422) one entry per field at fault."""
    detail: Union[str, list[FieldError]]


def _error(description: str, headers: dict | None = None) -> dict:
    out = {"model": ErrorBody, "description": description}
    return {**out, "headers": headers} if headers else out


_RETRY = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
# The statuses an endpoint can answer besides 200, for the OpenAPI document.
AUTH_ERRORS = {
    401: _error("no API key, or an unknown one", {"WWW-Authenticate": {"schema": {"type": "string"}}}),
    403: _error("the key lacks the endpoint's scope"),
    429: _error("the key's rate limit is spent", _RETRY),
}
POST_ERRORS = {
    **AUTH_ERRORS,
    404: _error("no such model served here"),
    413: _error("the request body is over the configured size"),
    422: _error("bad input: each entry names its field"),
    500: _error("an unexpected failure (the server's log has the details)"),
    503: _error("the model's queue is full, or the model is not ready yet", _RETRY),
    504: _error("the model did not answer within the request timeout"),
}


def field_error(field: str, msg: str) -> dict:
    """One entry of a 422 body, shaped like FastAPI's own validation errors."""
    return {"loc": ["body", field], "msg": msg, "type": "value_error"}


COMMON_FIELDS = frozenset({"n", "seed", "version"})  # request fields every model takes


def accepted_fields(config: dict) -> frozenset[str]:
    """The request fields a model takes: n and seed, its family's sampling options, streaming
    where the family decodes step by step, and its modality's own (music: wav)."""
    cls = family_class(config["family"])
    streams = frozenset({"stream"}) if cls.streams else frozenset()
    return COMMON_FIELDS | cls.sample_options | streams | modalities.get(cls.modality_of(config)).request_fields


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
    if req.stream and req.n > 1:
        errors.append(field_error("stream", "a streamed request generates one sample (n = 1)"))
    return errors


# ---- the vocabulary the capabilities share (services/capabilities/) -------------------------------


class ImageInputs(BaseModel):
    """Images of the model's shape: base64 PNGs, or rows of the test split of the model's data set
    (models/splits.py: positions in its class-stratified evaluation order)."""
    inputs: Optional[list[Png]] = Field(None, min_length=1, max_length=MAX_INPUTS, description="base64 PNG images")
    indices: Optional[list[Annotated[StrictInt, Field(ge=0)]]] = Field(
        None, min_length=1, max_length=MAX_INPUTS, description="test rows: positions in the test split's "
                                                             "class-stratified evaluation order")


def check_images(req: ImageInputs) -> list[dict]:
    if (req.inputs is None) == (req.indices is None):
        return [field_error("inputs", "give exactly one of 'inputs' (base64 PNGs) and 'indices' (test rows)")]
    return []


def unused(req: BaseModel, method: str, accepted: frozenset[str]) -> list[dict]:
    """422 entries for the fields a request sets that its method does not read (never ignored)."""
    return [field_error(f, f"field {f!r} does not apply to the {method} method; it takes {sorted(accepted)}")
            for f in sorted(req.model_fields_set - accepted - {"method"})]
