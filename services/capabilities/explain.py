"""POST /v1/explain/{model}: attributions (Captum's saliency, IG, SmoothGrad, GradientSHAP,
occlusion, KernelSHAP, LIME; a Markov chain's exact counts) and global views (partial dependence,
latent traversals), as JSON with pictures, or with "format": "png" the picture itself. What each
family's explanation is about is models/explain/targets.py's business; this module turns a request
into inputs, runs the method, and draws the pictures."""
from __future__ import annotations

import io
from typing import Annotated, Any, Optional, Union

import torch
from PIL import Image
from pydantic import ConfigDict, Field, StrictBool, StrictInt, StrictStr

from genray.models.errors import OptionError
from genray.models.explain import dependence, explain
from genray.models.explain.catalog import explain_methods, global_input, input_kind, scores_images
from genray.models.explain.faithfulness import evaluate
from genray.models.explain.methods import DEFAULTS
from genray.models.explain.render import curves_png, grid_png, heatmap_png, text_html
from genray.models.modalities.base import b64
from genray.services.schemas import MAX_INPUTS, Answer, ImageInputs, Number, Seed, field_error, unused
from genray.services.spec import INVALID, Capability, Limits, Metric, Raw


class ExplainRequest(ImageInputs):
    model_config = ConfigDict(extra="forbid")

    method: StrictStr = Field(..., max_length=32, description="saliency | ig | smoothgrad | gradshap | occlusion | "
                                                             "kernelshap | lime; markov: exact; vae, gan, ar: pdp; "
                                                             "vae, gan: traversal")
    generated: Optional[StrictInt] = Field(None, ge=1, le=MAX_INPUTS,
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
    seed: Seed = None
    feature: Optional[StrictInt] = Field(None, ge=0, description="pdp: the latent dimension (vae, gan) or lag (ar)")
    grid: StrictInt = Field(9, ge=2, le=64, description="pdp, traversal: points along the feature")
    dims: Optional[list[Annotated[StrictInt, Field(ge=0)]]] = Field(None, min_length=1, max_length=8,
                                                                    description="traversal: latent dimensions")
    n: StrictInt = Field(16, ge=1, le=64, description="gan pdp: latent draws (ICE curves)")
    classifier: Optional[StrictStr] = Field(None, max_length=80, description="pdp: the classifier whose belief the "
                                                                              "curves read")


class ExplainResponse(Answer):
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


def check(req: ExplainRequest, config: dict) -> list[dict]:
    methods = explain_methods(config)
    if req.method not in methods:
        return [field_error("method", f"{config['family']} models take the explanation method(s) {list(methods)}, "
                                      f"not {req.method!r}")]
    errors = unused(req, req.method, explain_fields(req.method, config))
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


ICE_WINDOWS = 16  # ar pdp: ICE curves for the windows ending at the series' last positions


def _images(bench, model, rec, req: ExplainRequest) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The request's images in [0, 1] and, for test rows, their labels; a GAN's own samples."""
    if req.generated:
        from genray.models.base import seeded

        n = req.generated
        label = req.target
        images = model.sample(n, generator=[seeded(req.seed + i) for i in range(n)],
                              **({"label": label} if model.num_classes else {}))
        return torch.stack(list(images)), None
    return bench.images(req, rec, model.shape)


def stacked_png(pngs: list[bytes]) -> bytes:
    """Pictures one above the other, in one PNG."""
    images = [Image.open(io.BytesIO(p)).convert("RGB") for p in pngs]
    out = Image.new("RGB", (max(i.width for i in images), sum(i.height for i in images)), "white")
    y = 0
    for i in images:
        out.paste(i, (0, y))
        y += i.height
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()


def run(job, req: ExplainRequest):
    model, rec = job.load()
    if req.method in ("pdp", "traversal"):
        out = _global(job.bench, model, rec, req)
    else:
        out = _attribute(job.bench, model, rec, req)
    if req.format == "png":
        return Raw(stacked_png(out["pictures"]), "image/png")
    return {"method": req.method, **out, "pictures": [b64(p) for p in out.get("pictures", [])]}


def _attribute(bench, model, rec, req: ExplainRequest) -> dict:
    kind = input_kind(rec.config)
    target = req.target
    if kind == "image":
        x, labels = _images(bench, model, rec, req)
        if target is None and labels is not None and scores_images(rec.config) and model.num_classes:
            target = labels  # test rows: a discriminator is asked about their own class
        inputs = x
    else:
        inputs = req.prompt if kind == "prompt" else req.series
    options = {k: getattr(req, k) for k in ("n_steps", "n_samples") if getattr(req, k) is not None}
    ex = explain(model, inputs, method=req.method, target=target, baseline=req.baseline,
                 patch=req.patch, seed=req.seed, **options)
    out = {"described": ex.described, "attributions": ex.attributions.tolist(), "scores": ex.scores.tolist(),
           "baseline_scores": [] if ex.baseline_scores is None else ex.baseline_scores.tolist(),
           "diagnostics": ex.diagnostics}
    if kind == "image":
        out["pictures"] = [heatmap_png(img, a) for img, a in zip(x, ex.attributions)]
    elif kind == "prompt":
        out["symbols"] = ex.symbols
        out["html"] = [text_html(s, a.tolist()) for s, a in zip(ex.symbols, ex.attributions)]
    if req.evaluate:
        if ex.explainable is None:
            raise OptionError("method 'exact' is exact: there is nothing to evaluate", "evaluate")
        out["faithfulness"] = evaluate(ex, **options)
    return out


def _global(bench, model, rec, req: ExplainRequest) -> dict:
    method, start, grid = req.method, global_input(rec.config), req.grid
    if start == "series":
        series = torch.as_tensor(req.series, dtype=torch.float64)
        p = model.max_order
        if len(series) < p:
            raise OptionError(f"series needs at least {p} values (the model's max_order) for pdp", "series")
        ends = range(max(p, len(series) - ICE_WINDOWS + 1), len(series) + 1)
        lag = 1 if req.feature is None else req.feature
        c = dependence.lag_curves(model, torch.stack([series[e - p:e] for e in ends]), lag, grid)
        picture = curves_png(c.grid, c.ice, c.feature, c.readout, f"{rec.name}: partial dependence")
        return {"curves": c.to_json(), "pictures": [picture]}
    if start == "image":  # encoded to the latent
        x, _ = _images(bench, model, rec, req)
        z, y = dependence.latents(model, x, len(x), None, 0)
    else:
        z, y = dependence.latents(model, None, req.n if method == "pdp" else 1,
                            req.target if method == "traversal" else None, req.seed)
    if method == "traversal":
        dims = req.dims or list(range(min(8, model.latent_dim)))
        picture = grid_png(dependence.traversal(model, z, y, dims, grid))
        return {"pictures": [picture], "curves": {"dims": dims, "offsets": torch.linspace(
            -dependence.LATENT_RANGE, dependence.LATENT_RANGE, grid).tolist()}}
    # A model that scores images itself (a discriminator) is read directly unless a classifier is named.
    judge = bench.judge(req.classifier, rec) if not scores_images(rec.config) or req.classifier \
        else None
    c = dependence.latent_curves(model, z, y, req.feature or 0, grid, judge=judge, target=req.target)
    picture = curves_png(c.grid, c.ice, c.feature, c.readout, f"{rec.name}: partial dependence")
    return {"curves": c.to_json(), "pictures": [picture]}


def observe(metrics: dict, model: str, method: str, req, result: dict) -> None:
    for r in ((result.get("faithfulness") or {}).get("deletion") or {}).get("ratio_to_random", []):
        if r is not None:
            metrics["explain_deletion_auc_ratio"].labels(model, method).observe(r)


SPEC = Capability(
    name="explain", summary="An explanation of a registry model's output: JSON, or with format png the picture "
                            "(explain scope).",
    request=ExplainRequest, response=ExplainResponse, run=run, check=check, scope="explain",
    serves=lambda rec: bool(explain_methods(rec.config)),
    method=lambda req, config: req.method if req.method in explain_methods(config) else INVALID,
    # Up to thousands of passes each, and Captum's sampling methods draw from torch's global
    # generator: one at a time per replica, inline (the thread hop costs about 15 ms of 85 for IG
    # on a digit on 2 cores), and a short queue.
    limits=Limits(max_ongoing=1, max_queued=8, cpus=0.5, threaded=False),
    metrics=(Metric("summary", "explain_deletion_auc_ratio", "Deletion AUC of each evaluated explanation over a "
                    "random ranking's (lower is more faithful; the mean is _sum / _count)", ("model", "method")),),
    observe=observe, media=("image/png",),
)
