"""POST /v1/inpaint/{model}: a VAE or flow model of the registry fills the hidden pixels of images
(models/inpaint), a hundred or more passes each, two at a time per replica."""
from __future__ import annotations

from typing import Optional

from pydantic import ConfigDict, Field, StrictInt, StrictStr

from genray.models.codecs.images import to_png
from genray.models.inpaint import MASKS, inpaint, inpaint_methods, make_mask, mask_from_png, masked_psnr, per_image
from genray.models.inpaint.generative import MAX_STEPS
from genray.models.modalities.base import b64
from genray.services.schemas import Answer, ImageInputs, Number, Seed, check_images, field_error
from genray.services.spec import INVALID, Capability, Limits
from genray.services.workbench import from_b64

MAX_COMPLETIONS = 16  # inputs x n: what one request may ask for


class InpaintRequest(ImageInputs):
    """Images of the model's shape (base64 PNGs, or test rows: the answer then scores PSNR against
    them), a mask, and how many completions of each."""
    model_config = ConfigDict(extra="forbid")

    mask: StrictStr = Field("center", max_length=1_000_000, description="center | top | bottom | left | right | "
                                                                        "random, or a base64 PNG of the image's "
                                                                        "size, white where pixels are missing")
    fraction: Number = Field(0.5, gt=0, lt=1, description="random: the share of pixels hidden")
    method: Optional[StrictStr] = Field(None, max_length=16, description="vae: latent (default) | gibbs; flow: map "
                                                                         "(default) | langevin")
    n: StrictInt = Field(1, ge=1, le=MAX_COMPLETIONS, description="completions of each image")
    steps: StrictInt = Field(100, ge=1, le=MAX_STEPS, description="optimisation or sampling steps")
    seed: Seed = None
    label: Optional[StrictInt] = Field(None, ge=0, description="class-conditional VAE: the class to complete "
                                                               "(default: the one that explains the seen pixels)")


class InpaintResponse(Answer):
    method: str
    images: list[str] = Field(..., description="base64 PNG of each completion, n per input in input order; the "
                                               "seen pixels are the input's")
    mask: str = Field(..., description="base64 PNG of the mask used, white where filled")
    psnr: Optional[list[float]] = Field(None, description="with indices: PSNR (dB) of each completion on the "
                                                          "hidden pixels, against the test image")


def check(req: InpaintRequest, config: dict) -> list[dict]:
    methods = inpaint_methods(config)
    errors = check_images(req)
    given = len(req.inputs or req.indices or [])
    if given * req.n > MAX_COMPLETIONS:
        errors.append(field_error("n", f"{given} images x n = {given * req.n} completions; at most "
                                       f"{MAX_COMPLETIONS} a request"))
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


def run(job, req: InpaintRequest) -> dict:
    model, rec = job.load()
    _, H, W = model.shape
    images, _ = job.bench.images(req, rec, model.shape)  # (B, C, H, W)
    mask = (make_mask(req.mask, H, W, fraction=req.fraction, seed=req.seed) if req.mask in MASKS
            else mask_from_png(from_b64(req.mask, "mask"), H, W))
    method = req.method or inpaint_methods(rec.config)[0]
    out = inpaint(model, images, mask, method=method, steps=req.steps, n=req.n, seed=req.seed, label=req.label)
    out = (out * 255).round() / 255  # (B, n, C, H, W): what the PNGs hold, so that the PSNR is theirs
    flat = out.flatten(0, 1)
    psnr = None
    if req.indices is not None:  # test rows: the truth is known
        truth = images[:, None].expand_as(out).flatten(0, 1)
        psnr = masked_psnr(flat, truth, per_image(mask, len(flat))).tolist()
    return {"method": method, "images": [b64(to_png(img)) for img in flat], "mask": b64(to_png(mask[None].float())),
            "psnr": psnr}


def method(req: InpaintRequest, config: dict) -> str:
    methods = inpaint_methods(config)
    chosen = req.method or methods[0]
    return chosen if chosen in methods else INVALID


SPEC = Capability(
    name="inpaint", summary="Fill the hidden pixels of images with a VAE or flow model (generate scope).",
    request=InpaintRequest, response=InpaintResponse, run=run, check=check,
    serves=lambda rec: rec.kind == "generative" and bool(inpaint_methods(rec.config)),
    method=method,
    limits=Limits(max_ongoing=2, max_queued=8, target_ongoing=2),
)
