"""POST /v1/attack/{model}: evasion of a classifier, an input whose VAE reconstruction decodes as a
target class, real images a GAN's discriminator scores as fake, or a prompt suffix that makes a
char LM's continuation likely. Which attacks a model takes is its family's declaration
(models/robustness/catalog.py)."""
from __future__ import annotations

import math
from typing import Any, Optional

from pydantic import ConfigDict, Field, StrictBool, StrictInt, StrictStr

from genray.models.errors import OptionError
from genray.models.robustness import attack, discriminator_attack, reconstruction_attack, suffix_attack
from genray.models.robustness.attacks import EPS_LIMITS
from genray.models.robustness.catalog import TEXT_ATTACKS, attack_methods
from genray.services.schemas import Answer, ImageInputs, Number, Seed, check_images, field_error, unused
from genray.services.spec import INVALID, Capability, Limits, Metric, count_bools
from genray.services.workbench import pngs

DEFAULT_STEPS = 40  # apgd, square and autoattack take their own (100) when steps is unset


class AttackRequest(ImageInputs):
    model_config = ConfigDict(extra="forbid")

    method: StrictStr = Field(..., max_length=32, description="classifiers: fgsm | pgd | cw | apgd | square | "
                                                             "autoattack (standard: APGD-CE, APGD-T, FAB-T, "
                                                             "Square); vae: reconstruction; gan: discriminator; "
                                                             "text models: suffix (greedy coordinate gradient)")
    eps: Optional[Number] = Field(None, gt=0, description="perturbation budget in the norm (images in [0, 1])")
    norm: StrictStr = Field("linf", description="linf | l2")
    steps: Optional[StrictInt] = Field(None, ge=1, le=500, description="iterations: 40 by default; 100 for "
                                                                        "apgd and autoattack (Square: 50 queries "
                                                                        "a step)")
    step_size: Optional[Number] = Field(None, gt=0, le=64, description="the step (the learning rate for cw)")
    restarts: StrictInt = Field(1, ge=1, le=5, description="random starts (pgd, apgd)")
    targeted: StrictBool = False
    target: Optional[StrictInt] = Field(None, ge=0, description="the class a targeted attack (or the vae's) aims at")
    seed: Seed = None
    classifier: Optional[StrictStr] = Field(None, max_length=80, description="vae: the classifier that judges the "
                                                                              "reconstructions (default: one "
                                                                              "trained on the same data)")
    prompt: Optional[StrictStr] = Field(None, max_length=256, description="text models: the prompt")
    target_text: Optional[StrictStr] = Field(None, min_length=1, max_length=64,
                                             description="text models: the continuation to make likely")
    suffix_len: StrictInt = Field(10, ge=1, le=32)
    samples: StrictInt = Field(32, ge=0, le=128, description="text models: continuations sampled for hit rates")


class AttackResponse(Answer):
    method: str
    summary: dict[str, Any]
    clean: list[str] = Field(default_factory=list, description="base64 PNG of each input attacked")
    adversarial: list[str] = Field(default_factory=list, description="base64 PNG of each adversarial input")
    reconstructions: list[str] = Field(default_factory=list, description="vae: base64 PNG reconstructions")
    predictions_before: list[int] = Field(default_factory=list, description="the class of each input (vae: of its "
                                                                            "reconstruction)")
    predictions_after: list[int] = Field(default_factory=list, description="... and of each adversarial input")
    success: list[bool] = Field(default_factory=list)
    linf: list[float] = Field(default_factory=list)
    l2: list[float] = Field(default_factory=list)
    suffix: Optional[str] = Field(None, description="text models: the adversarial suffix found")


# The fields each method reads, beyond "method": any other field set is a 422, never ignored.
IMAGE_FIELDS = frozenset({"inputs", "indices", "eps", "norm", "steps", "step_size", "seed"})
FIELDS = {
    **{m: IMAGE_FIELDS | {"restarts", "targeted", "target"} for m in ("fgsm", "pgd", "apgd")},
    **{m: IMAGE_FIELDS - {"step_size"} for m in ("autoattack", "square")},  # they set their own steps
    "cw": IMAGE_FIELDS | {"targeted", "target"},
    "reconstruction": IMAGE_FIELDS | {"target", "classifier"},
    "discriminator": IMAGE_FIELDS,
    "suffix": frozenset({"prompt", "target_text", "suffix_len", "steps", "samples", "seed"}),
}
# Fields of the attack functions that a request names otherwise.
REQUEST_FIELDS = {"target": "target_text", "x": "inputs", "labels": "indices"}


def check(req: AttackRequest, config: dict) -> list[dict]:
    """Errors for an attack this model cannot take, fields its method does not read, or settings
    it needs and lacks."""
    methods = attack_methods(config)
    if req.method not in methods:
        return [field_error("method", f"{config['family']} models take the attack method(s) {list(methods)}, "
                                      f"not {req.method!r}")]
    errors = unused(req, req.method, FIELDS[req.method])
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


def run(job, req: AttackRequest) -> dict:
    try:
        return {"method": req.method, **_attack(job, req)}
    except OptionError as e:
        if req.method == "suffix" or e.field != "target":
            e.field = REQUEST_FIELDS.get(e.field, e.field)
        raise


def attack_images(model, method: str, x, y, *, eps: float, norm: str, steps: int | None, step_size: float | None,
                  seed: int, restarts: int = 1, targeted: bool = False, target: int | None = None, judge=None):
    """Run the image attack `method` on x (B, C, H, W) in [0, 1] with labels y (or None): the
    result object of models/robustness. `judge()` gives the classifier a vae's reconstructions are
    scored by. Shared by the endpoint and `genray attack`."""
    common = {"eps": eps, "norm": norm, "steps": DEFAULT_STEPS if steps is None else steps, "step_size": step_size,
              "seed": seed}
    if method == "reconstruction":
        if target is None:
            raise OptionError("the reconstruction attack needs a target class", "target")
        return reconstruction_attack(model, x, target=target, classifier=judge(), **common)
    if method == "discriminator":
        if model.num_classes and y is None:
            raise OptionError("this GAN's discriminator is conditioned on each image's class: send test rows "
                              "('indices'), whose labels it takes", "indices")
        return discriminator_attack(model, x, y if model.num_classes else None, **common)
    return attack(model, x, y, method=method, targeted=targeted, target=target, restarts=restarts,
                  **{**common, "steps": steps})  # None: the method's own default


def _attack(job, req: AttackRequest) -> dict:
    model, rec = job.load()
    if req.method == "suffix":
        r = suffix_attack(model, req.prompt, req.target_text, suffix_len=req.suffix_len,
                          steps=DEFAULT_STEPS if req.steps is None else req.steps, samples=req.samples, seed=req.seed)
        return {"summary": r.summary(), "suffix": r.suffix}
    x, y = job.bench.images(req, rec, model.shape)
    r = attack_images(model, req.method, x, y, eps=req.eps, norm=req.norm, steps=req.steps, step_size=req.step_size,
                      seed=req.seed, restarts=req.restarts, targeted=req.targeted, target=req.target,
                      judge=lambda: job.bench.judge(req.classifier, rec))
    if req.method == "reconstruction":
        measured = {"reconstructions": pngs(r.recon), "predictions_before": r.clean_recon_pred.tolist(),
                    "predictions_after": r.recon_pred.tolist(), "success": r.success.tolist()}
    elif req.method == "discriminator":
        measured = {"success": r.fooled.tolist()}
    else:
        measured = {"predictions_before": r.clean_pred.tolist(), "predictions_after": r.adv_pred.tolist(),
                    "success": r.success.tolist()}
    return {"summary": r.summary(), "clean": pngs(x), "adversarial": pngs(r.x_adv), "linf": r.linf.tolist(),
            "l2": r.l2.tolist(), **measured}


def observe(metrics: dict, model: str, method: str, req, result: dict) -> None:
    count_bools(metrics["attack_inputs"], (model, method), result.get("success", []))


SPEC = Capability(
    name="attack", summary="An adversarial attack on a registry model (attack scope).",
    request=AttackRequest, response=AttackResponse, run=run, check=check, scope="attack",
    serves=lambda rec: bool(attack_methods(rec.config)),
    method=lambda req, config: req.method if req.method in attack_methods(config) else INVALID,
    # Tens to hundreds of passes each, and ART seeds numpy's global state: one at a time per
    # replica, computed inline, and a short queue that turns a burst into 503s.
    limits=Limits(max_ongoing=1, max_queued=8, cpus=0.5, threaded=False),
    metrics=(Metric("counter", "attack_inputs", "Inputs attacked, by whether the attack succeeded",
                    ("model", "method", "success")),),
    observe=observe,
)
