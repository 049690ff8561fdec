"""Request and response bodies of the HTTP API, and the per-model checks pydantic cannot do alone."""
from __future__ import annotations

from typing import Annotated, Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from genray.models import modalities
from genray.models.catalog import family_class

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


class GenerateResponse(BaseModel):
    model: str
    version: int = Field(..., description="the version that generated the samples")
    samples: list[Any]


class ReloadResponse(BaseModel):
    models: dict[str, int] = Field(..., description="each model that follows the registry: the version it serves")


class ComposeRequest(BaseModel):
    """POST /v1/compose: a four-part chorale by the rules of tonal harmony, or a harmonisation."""
    model_config = ConfigDict(extra="forbid")

    key: StrictStr = Field("C", min_length=1, max_length=16, description="'C', 'F#', 'Bb' (major), 'a' or "
                                                                         "'A minor' (minor)")
    bars: StrictInt = Field(8, ge=1, le=64, description="bars of 4/4 (with a melody: its length instead)")
    melody: Optional[Union[StrictStr, list[StrictStr]]] = Field(
        None, max_length=4096, description="a soprano line to harmonise, as events ('G4/1 A4/0.5 R/1'; at most "
                                           "512)")
    seed: Optional[StrictInt] = Field(None, ge=0, lt=2**63, description="same seed, same chorale")
    wav: StrictBool = Field(False, description="also return the chorale rendered as a WAV file")


class ComposeResponse(BaseModel):
    key: str = Field(..., description="the key composed in, e.g. 'F# minor'")
    voices: dict[str, list[str]] = Field(..., description="Soprano, Alto, Tenor and Bass as note events")
    chords: list[Optional[str]] = Field(..., description="the chord under each event (Roman numeral; null at a "
                                                         "rest)")
    midi: str = Field(..., description="the four parts as a base64 MIDI file")
    wav: Optional[str] = Field(None, description="base64 WAV, on request")
    analysis: dict[str, Any] = Field(..., description="music21's check of the result: parallel_fifths, "
                                                      "parallel_octaves, range_violations, crossings, key, "
                                                      "key_agrees")


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


# ---- robustness: /v1/attack and /v1/defend --------------------------------------------------
MAX_INPUTS = 64
Png = Annotated[StrictStr, Field(max_length=1_000_000)]


class ImageInputs(BaseModel):
    """Images to attack or defend: base64 PNGs of the model's shape, or rows of the test split of
    the model's data set (models/splits.py: positions in its class-stratified evaluation order)."""
    inputs: Optional[list[Png]] = Field(None, min_length=1, max_length=MAX_INPUTS, description="base64 PNG images")
    indices: Optional[list[Annotated[StrictInt, Field(ge=0)]]] = Field(
        None, min_length=1, max_length=MAX_INPUTS, description="test rows: positions in the test split's "
                                                             "class-stratified evaluation order")


class AttackRequest(ImageInputs):
    model_config = ConfigDict(extra="forbid")

    method: StrictStr = Field(..., max_length=32, description="classifiers: fgsm | pgd | cw | apgd | square | "
                                                             "autoattack (standard: APGD-CE, APGD-T, FAB-T, "
                                                             "Square); vae: "
                                                             "reconstruction; gan: discriminator; text models: "
                                                             "suffix (greedy coordinate gradient)")
    eps: Optional[Number] = Field(None, gt=0, description="perturbation budget in the norm (images in [0, 1])")
    norm: StrictStr = Field("linf", description="linf | l2")
    steps: Optional[StrictInt] = Field(None, ge=1, le=500, description="iterations: 40 by default; 100 for "
                                                                        "apgd and autoattack (Square: 50 queries "
                                                                        "a step)")
    step_size: Optional[Number] = Field(None, gt=0, le=64, description="the step (the learning rate for cw)")
    restarts: StrictInt = Field(1, ge=1, le=5, description="random starts (pgd, apgd)")
    targeted: StrictBool = False
    target: Optional[StrictInt] = Field(None, ge=0, description="the class a targeted attack (or the vae's) aims at")
    seed: StrictInt = Field(0, ge=0, lt=2**31)
    classifier: Optional[StrictStr] = Field(None, max_length=80, description="vae: the classifier that judges the "
                                                                              "reconstructions (default: one "
                                                                              "trained on the same data)")
    prompt: Optional[StrictStr] = Field(None, max_length=256, description="text models: the prompt")
    target_text: Optional[StrictStr] = Field(None, min_length=1, max_length=64,
                                             description="text models: the continuation to make likely")
    suffix_len: StrictInt = Field(10, ge=1, le=32)
    samples: StrictInt = Field(32, ge=0, le=128, description="text models: continuations sampled for hit rates")


class AttackResponse(BaseModel):
    model: str
    version: int
    method: str
    summary: dict[str, Any]
    clean: list[str] = Field(default_factory=list, description="base64 PNG of each input attacked")
    adversarial: list[str] = Field(default_factory=list, description="base64 PNG of each adversarial input")
    reconstructions: list[str] = Field(default_factory=list, description="vae: base64 PNG reconstructions")
    clean_predictions: list[int] = Field(default_factory=list)
    adversarial_predictions: list[int] = Field(default_factory=list)
    success: list[bool] = Field(default_factory=list)
    linf: list[float] = Field(default_factory=list)
    l2: list[float] = Field(default_factory=list)
    suffix: Optional[str] = Field(None, description="text models: the adversarial suffix found")


class DefendRequest(ImageInputs):
    model_config = ConfigDict(extra="forbid")

    method: StrictStr = Field(..., max_length=32, description="purify (reconstruct, then classify) | detect "
                                                             "(likelihood scores)")
    classifier: Optional[StrictStr] = Field(None, max_length=80, description="purify: the classifier to predict with "
                                                                              "(default: one trained on the same data)")


class DefendResponse(BaseModel):
    model: str
    version: int
    method: str
    purified: list[str] = Field(default_factory=list, description="purify: base64 PNG of each purified input")
    predictions: list[int] = Field(default_factory=list, description="purify: the classifier on the purified inputs")
    predictions_before: list[int] = Field(default_factory=list, description="purify: the classifier on the inputs")
    scores: list[float] = Field(default_factory=list, description="detect: anomaly score (bits/dim)")
    flagged: list[bool] = Field(default_factory=list, description="detect: score above the threshold")
    threshold: Optional[float] = Field(None, description="detect: the score that 5% of validation images exceed")


def check_images(req: ImageInputs) -> list[dict]:
    if (req.inputs is None) == (req.indices is None):
        return [field_error("inputs", "give exactly one of 'inputs' (base64 PNGs) and 'indices' (test rows)")]
    return []


# The fields each method reads, beyond "method": any other field set is a 422, never ignored.
IMAGE_FIELDS = frozenset({"inputs", "indices", "eps", "norm", "steps", "step_size", "seed"})
ATTACK_FIELDS = {
    **{m: IMAGE_FIELDS | {"restarts", "targeted", "target"} for m in ("fgsm", "pgd", "apgd")},
    **{m: IMAGE_FIELDS - {"step_size"} for m in ("autoattack", "square")},  # they set their own steps
    "cw": IMAGE_FIELDS | {"targeted", "target"},
    "reconstruction": IMAGE_FIELDS | {"target", "classifier"},
    "discriminator": IMAGE_FIELDS,
    "suffix": frozenset({"prompt", "target_text", "suffix_len", "steps", "samples", "seed"}),
}
DEFENSE_FIELDS = {"detect": frozenset({"inputs", "indices"}), "purify": frozenset({"inputs", "indices", "classifier"})}


def _unused(req: BaseModel, method: str, accepted: frozenset[str]) -> list[dict]:
    return [field_error(f, f"field {f!r} does not apply to the {method} method; it takes {sorted(accepted)}")
            for f in sorted(req.model_fields_set - accepted - {"method"})]


def check_attack(req: AttackRequest, config: dict) -> list[dict]:
    """Errors for an attack this model cannot take, fields its method does not read, or
    settings it needs and lacks."""
    import math

    from genray.models.robustness.attacks import EPS_LIMITS
    from genray.models.robustness.catalog import TEXT_ATTACKS, attack_methods

    methods = attack_methods(config)
    if req.method not in methods:
        return [field_error("method", f"{config['family']} models take the attack method(s) {list(methods)}, "
                                      f"not {req.method!r}")]
    errors = _unused(req, req.method, ATTACK_FIELDS[req.method])
    if req.method in TEXT_ATTACKS:
        return errors + [field_error(f, f"the {req.method} attack needs {f!r}") for f in ("prompt", "target_text")
                         if getattr(req, f) is None]
    errors += check_images(req)
    # An L2 budget past the norm of the all-ones image (sqrt of the pixel count) bounds nothing.
    limit = min(EPS_LIMITS.get(req.norm, 0), math.sqrt(math.prod(config["shape"]))) if req.norm == "l2" \
        else EPS_LIMITS.get(req.norm)
    if limit is None:
        errors.append(field_error("norm", f"norm must be one of {list(EPS_LIMITS)}, got {req.norm!r}"))
    elif req.eps is None:
        errors.append(field_error("eps", "an attack on images needs a perturbation budget 'eps'"))
    elif req.eps > limit:
        errors.append(field_error("eps", f"eps must be at most {limit:g} for norm {req.norm} on these images"))
    classes = config.get("num_classes", 0)
    if req.target is not None and classes and req.target >= classes:
        errors.append(field_error("target", f"target must be in [0, {classes - 1}]"))
    if req.target is not None and req.method in ("fgsm", "pgd", "apgd", "cw") and not req.targeted:
        errors.append(field_error("targeted", "a target class needs 'targeted': true"))
    return errors


def check_defense(req: DefendRequest, config: dict) -> list[dict]:
    from genray.models.robustness.catalog import defense_methods

    methods = defense_methods(config)
    if req.method not in methods:
        return [field_error("method", f"{config['family']} models take the defense method(s) {list(methods)}, "
                                      f"not {req.method!r}")]
    return _unused(req, req.method, DEFENSE_FIELDS[req.method]) + check_images(req)


# ---- explanations: /v1/explain --------------------------------------------------------------
MAX_EXPLAIN_INPUTS = 16


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    method: StrictStr = Field(..., max_length=32, description="saliency | ig | smoothgrad | gradshap | occlusion | "
                                                             "kernelshap | lime; markov: exact; vae, gan, ar: pdp; "
                                                             "vae, gan: traversal")
    inputs: Optional[list[Png]] = Field(None, min_length=1, max_length=MAX_EXPLAIN_INPUTS,
                                        description="image models: base64 PNG images")
    indices: Optional[list[Annotated[StrictInt, Field(ge=0)]]] = Field(
        None, min_length=1, max_length=MAX_EXPLAIN_INPUTS, description="image models: test rows, positions in the "
                                                                       "test split's class-stratified evaluation order")
    generated: Optional[StrictInt] = Field(None, ge=1, le=MAX_EXPLAIN_INPUTS,
                                           description="gan: explain this many of its own samples (from seed)")
    prompt: Optional[StrictStr] = Field(None, min_length=1, max_length=256,
                                        description="text and music models: the prompt (music: events)")
    series: Optional[list[Number]] = Field(None, min_length=1, max_length=4096, description="ar: the history")
    target: Optional[Union[StrictInt, Annotated[StrictStr, Field(min_length=1, max_length=64)]]] = Field(
        None, description="a class (image models), or the next symbol or a continuation (text, music); "
                          "default: the model's own choice")
    baseline: Optional[Union[Annotated[StrictStr, Field(max_length=16)], Number]] = Field(
        None, description="images: zero | blur | a grey level in [0, 1]; text: zero | one symbol; ar: a number")
    n_steps: Optional[StrictInt] = Field(None, ge=2, le=512, description="ig: integration steps (default 64)")
    n_samples: Optional[StrictInt] = Field(None, ge=1, le=2000, description="smoothgrad, gradshap, kernelshap, "
                                                                              "lime: samples")
    patch: Optional[StrictInt] = Field(None, ge=1, le=64, description="images: feature patch size (occlusion, "
                                                                      "kernelshap, lime)")
    evaluate: StrictBool = Field(False, description="also return faithfulness numbers (deletion and insertion AUC "
                                                    "against random and edge rankings, infidelity, max-sensitivity)")
    format: StrictStr = Field("json", pattern="^(json|png)$", description="png: the picture itself (image/png)")
    seed: StrictInt = Field(0, ge=0, lt=2**31)
    feature: Optional[StrictInt] = Field(None, ge=0, description="pdp: the latent dimension (vae, gan) or lag (ar)")
    grid: StrictInt = Field(9, ge=2, le=64, description="pdp, traversal: points along the feature")
    dims: Optional[list[Annotated[StrictInt, Field(ge=0)]]] = Field(None, min_length=1, max_length=8,
                                                                    description="traversal: latent dimensions")
    n: StrictInt = Field(16, ge=1, le=64, description="gan pdp: latent draws (ICE curves)")
    classifier: Optional[StrictStr] = Field(None, max_length=80, description="pdp: the classifier whose belief the "
                                                                              "curves read")


class ExplainResponse(BaseModel):
    model: str
    version: int
    method: str
    described: list[dict[str, Any]] = Field(default_factory=list, description="per input: what was explained")
    attributions: list[Any] = Field(default_factory=list, description="per input, shaped like it")
    symbols: list[list[str]] = Field(default_factory=list, description="text and music: the prompt's symbols")
    scores: list[float] = Field(default_factory=list, description="the explained quantity at each input")
    baseline_scores: list[float] = Field(default_factory=list, description="... and at its baseline")
    diagnostics: dict[str, Any] = Field(default_factory=dict, description="e.g. ig's completeness delta")
    faithfulness: Optional[dict[str, Any]] = Field(None, description="with evaluate: true")
    pictures: list[str] = Field(default_factory=list, description="base64 PNG: heatmap overlays, curves, grids")
    html: list[str] = Field(default_factory=list, description="text and music: the prompt shaded by attribution")
    curves: Optional[dict[str, Any]] = Field(None, description="pdp: grid, ice, pdp; traversal: dims, offsets")


def explain_fields(method: str, config: dict) -> frozenset[str]:
    """The request fields an explanation method reads for this model; any other is a 422."""
    from genray.models.explain.catalog import global_input, input_kind, scores_images
    from genray.models.explain.methods import DEFAULTS

    kind = input_kind(config)
    images = {"inputs", "indices"} | ({"generated"} if scores_images(config) else set())
    given = {"image": images, "prompt": {"prompt"}, "series": {"series"}}[kind]
    if method == "exact":
        return frozenset({"prompt", "target", "format"})
    start = global_input(config)
    if method == "pdp":
        where = {"image": images, None: {"n", "seed"}, "series": {"series"}}[start]
        return frozenset(where | {"feature", "grid", "format"}
                         | ({"classifier", "target"} if start != "series" else set()))
    if method == "traversal":
        where = {"inputs", "indices"} if start == "image" else {"seed", "target"}
        return frozenset(where | {"dims", "grid", "format"})
    extra = {"target", "baseline", "evaluate", "format", "seed"} | set(DEFAULTS.get(method, {}))
    if kind == "image" and method in ("occlusion", "kernelshap", "lime"):
        extra.add("patch")
    return frozenset(given | extra)


def check_explain(req: ExplainRequest, config: dict) -> list[dict]:
    from genray.models.explain.catalog import explain_methods, global_input, input_kind, scores_images

    methods = explain_methods(config)
    if req.method not in methods:
        return [field_error("method", f"{config['family']} models take the explanation method(s) {list(methods)}, "
                                      f"not {req.method!r}")]
    errors = _unused(req, req.method, explain_fields(req.method, config))
    kind = input_kind(config)
    # pdp and traversal start from encoded images, a series, or (None) latents drawn by seed.
    need = global_input(config) if req.method in ("pdp", "traversal") else kind
    if need == "image":
        given = [f for f in ("inputs", "indices", "generated") if getattr(req, f) is not None]
        if len(given) != 1:
            errors.append(field_error("inputs", "give exactly one of 'inputs' (base64 PNGs) and 'indices' "
                                                "(test rows)" + (", or 'generated'" if scores_images(config) else "")))
    elif need and getattr(req, need) is None:
        errors.append(field_error(need, f"the {req.method} method needs {need!r}"))
    if req.format == "png" and kind != "image" and req.method != "pdp":
        errors.append(field_error("format", "format 'png' applies to image models and pdp; text and series "
                                            "explanations come as JSON (text with an HTML snippet)"))
    if isinstance(req.target, str) and kind == "image" or isinstance(req.target, int) and kind == "prompt":
        errors.append(field_error("target", "target is a class (an integer) for image models and a symbol or "
                                            "continuation (a string) for text and music models"))
    return errors


# ---- applications: /v1/inpaint ---------------------------------------------------------------
class InpaintRequest(BaseModel):
    """POST /v1/inpaint/{model}: fill the hidden pixels of an image with a VAE or flow model."""
    model_config = ConfigDict(extra="forbid")

    image: Optional[Png] = Field(None, description="base64 PNG of the model's image shape")
    index: Optional[StrictInt] = Field(None, ge=0, description="instead of an image, a test row (its position in "
                                                               "the evaluation order; the answer then scores PSNR "
                                                               "against it)")
    mask: StrictStr = Field("center", max_length=1_000_000, description="center | top | bottom | left | right | "
                                                                        "random, or a base64 PNG of the image's "
                                                                        "size, white where pixels are missing")
    fraction: Number = Field(0.5, gt=0, lt=1, description="random: the share of pixels hidden")
    method: Optional[StrictStr] = Field(None, max_length=16, description="vae: latent (default) | gibbs; flow: map "
                                                                         "(default) | langevin")
    n: StrictInt = Field(1, ge=1, le=16, description="completions of the image")
    steps: StrictInt = Field(100, ge=1, le=1000, description="optimisation or sampling steps")
    seed: StrictInt = Field(0, ge=0, lt=2**31, description="same seed, same completions")
    label: Optional[StrictInt] = Field(None, ge=0, description="class-conditional VAE: the class to complete "
                                                               "(default: the one that explains the seen pixels)")


class InpaintResponse(BaseModel):
    model: str
    version: int
    method: str
    images: list[str] = Field(..., description="base64 PNG of each completion; the seen pixels are the input's")
    mask: str = Field(..., description="base64 PNG of the mask used, white where filled")
    psnr: Optional[list[float]] = Field(None, description="with index: PSNR (dB) of each completion on the hidden "
                                                          "pixels, against the test image")


def check_inpaint(req: InpaintRequest, config: dict) -> list[dict]:
    from genray.models.inpaint import MASKS, inpaint_methods

    methods = inpaint_methods(config)
    errors = []
    if (req.image is None) == (req.index is None):
        errors.append(field_error("image", "give exactly one of 'image' (a base64 PNG) and 'index' (a test "
                                           "row)"))
    if req.method is not None and req.method not in methods:
        errors.append(field_error("method", f"{config['family']} models inpaint by {list(methods)}, not "
                                            f"{req.method!r}"))
    if req.label is not None and req.label >= config.get("num_classes", 0):
        errors.append(field_error("label", f"this model has {config.get('num_classes', 0)} classes"))
    if "fraction" in req.model_fields_set and req.mask != "random":
        errors.append(field_error("fraction", "fraction applies to the random mask only"))
    if req.mask not in MASKS and len(req.mask) < 16:  # too short for a PNG: a misspelt name
        errors.append(field_error("mask", f"mask must be one of {list(MASKS)} or a base64 PNG, got {req.mask!r}"))
    return errors


# ---- applications: /v1/style -------------------------------------------------------------------
Photo = Annotated[StrictStr, Field(min_length=1, max_length=12_000_000)]


class StyleRequest(BaseModel):
    """POST /v1/style: a photograph redrawn with another image's texture statistics."""
    model_config = ConfigDict(extra="forbid")

    content: Photo = Field(..., description="base64 PNG or JPEG, or a built-in photograph: astronaut | chelsea | "
                                            "coffee | rocket")
    style: Optional[Photo] = Field(None, description="base64 PNG or JPEG, or a built-in image: immunohistochemistry "
                                                     "| hubble_deep_field | brick | gravel | grass | colorwheel (or "
                                                     "a content photograph)")
    model: Optional[StrictStr] = Field(None, max_length=200, description="instead of style: a feed-forward style "
                                                                        "network of the registry (one pass, its "
                                                                        "own style)")
    strength: Number = Field(0.8, gt=0, le=1, description="the share of the style distance to remove (the style "
                                                          "term's weight grows until it is gone)")
    steps: StrictInt = Field(200, ge=1, le=500, description="Adam steps on the pixels")
    max_side: StrictInt = Field(256, ge=16, le=512, description="the output's longer side in pixels (never upscaled)")
    loss: StrictStr = Field("gram", max_length=8, description="gram (Gatys) | stats (channel means and deviations)")
    seed: StrictInt = Field(0, ge=0, lt=2**31, description="the random feature network's seed")


class StyleResponse(BaseModel):
    image: str = Field(..., description="base64 PNG of the result")
    model: Optional[str] = Field(None, description="the style network, when one was asked for")
    version: Optional[int] = None
    summary: dict[str, float] = Field(..., description="style_distance_before/_after and style_reduction on the "
                                                       "optimised features, the same on a second random network "
                                                       "of that architecture (another seed; heldout_*), "
                                                       "content_ssim, seconds")


def check_style(req: StyleRequest, config: dict) -> list[dict]:
    from genray.models.style import STYLE_LOSSES

    if (req.style is None) == (req.model is None):
        return [field_error("style", "give exactly one of 'style' (an image to optimise towards) and 'model' (a "
                                     "style network)")]
    if req.model is not None:
        return [field_error(f, f"{f} applies to the optimisation, not to a style network")
                for f in ("strength", "steps", "loss", "seed") if f in req.model_fields_set]
    if req.loss not in STYLE_LOSSES:
        return [field_error("loss", f"loss must be one of {list(STYLE_LOSSES)}, got {req.loss!r}")]
    return []


# ---- applications: /v1/summarize ---------------------------------------------------------------
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
    seed: StrictInt = Field(0, ge=0, lt=2**31, description="random: same seed, same sentences")


class SummarizeResponse(BaseModel):
    model: str
    version: Optional[int] = Field(None, description="the registry version; none for the built-in methods")
    aspect: str
    summary: str
    sentences: Optional[list[int]] = Field(None, description="extractive: the kept sentences' indices, in order")
    source: Optional[list[int]] = Field(None, description="abstractive: the sentences its extractor gave it")
    seconds: float


def check_summarize(req: SummarizeRequest, config: dict) -> list[dict]:
    from genray.models.catalog import family_class
    from genray.models.summarize import ASPECTS

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
