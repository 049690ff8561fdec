"""POST /v1/style: a photograph redrawn with another image's texture statistics, by optimisation
on its pixels (hundreds of passes of a random-filter network: one at a time per replica, stopped
when its caller goes away), or in one pass of a registry style network named in the body."""
from __future__ import annotations

import io
from typing import Annotated, Optional

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from genray.models.codecs.images import EIGHT_BIT_MODES, to_png
from genray.models.errors import OptionError
from genray.models.modalities.base import b64
from genray.models.style import MAX_STEPS, PHOTOS, STYLE_LOSSES, photo, transfer
from genray.services.schemas import Answer, Number, Seed, field_error
from genray.services.spec import Capability, Limits
from genray.services.workbench import from_b64

MAX_PIXELS = 4096 * 4096  # an upload's size, checked from its header before decoding
OPTIMISER = "random-features"  # the served name of the optimisation, when no network is named
Photo = Annotated[StrictStr, Field(min_length=1, max_length=12_000_000)]


class StyleRequest(BaseModel):
    """A photograph and a style image to optimise towards, or a style network."""
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
    steps: StrictInt = Field(200, ge=1, le=MAX_STEPS, description="Adam steps on the pixels")
    max_side: StrictInt = Field(256, ge=16, le=512, description="the output's longer side in pixels (never upscaled)")
    loss: StrictStr = Field("gram", max_length=8, description="gram (Gatys) | stats (channel means and deviations)")
    seed: Seed = None


class StyleResponse(Answer):
    image: str = Field(..., description="base64 PNG of the result")
    summary: dict[str, float] = Field(..., description="style_distance_before/_after and style_reduction on the "
                                                       "optimised features, the same on a second random network "
                                                       "of that architecture (another seed; heldout_*), "
                                                       "content_ssim, seconds")


def check(req: StyleRequest, config: dict) -> list[dict]:
    if (req.style is None) == (req.model is None):
        return [field_error("style", "give exactly one of 'style' (an image to optimise towards) and 'model' (a "
                                     "style network)")]
    if req.model is not None:
        return [field_error(f, f"{f} applies to the optimisation, not to a style network")
                for f in ("strength", "steps", "loss", "seed") if f in req.model_fields_set]
    if req.loss not in STYLE_LOSSES:
        return [field_error("loss", f"loss must be one of {list(STYLE_LOSSES)}, got {req.loss!r}")]
    return []


def read_image(value: str, field: str) -> torch.Tensor:
    """A request's image: a built-in photograph's name, or base64 PNG/JPEG bytes; (3, H, W) in [0, 1]."""
    from PIL import Image

    if value in PHOTOS:
        return photo(value)
    if len(value) < 64:  # no image is this short: a misspelt name
        raise OptionError(f"{field}: unknown photograph {value!r}; built in: {list(PHOTOS)}, or send a base64 PNG "
                          f"or JPEG", field)
    data = from_b64(value, field)
    try:
        im = Image.open(io.BytesIO(data))  # the header only
    except (OSError, Image.DecompressionBombError):
        raise OptionError(f"{field} is not an image Pillow can read", field) from None
    if im.width * im.height > MAX_PIXELS:
        raise OptionError(f"{field} is {im.width}x{im.height} pixels; at most {MAX_PIXELS} pixels", field)
    if im.mode not in EIGHT_BIT_MODES:
        raise OptionError(f"{field} has {im.mode} pixels; send 8-bit grey or colour images", field)
    arr = np.array(im.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0


def run(job, req: StyleRequest) -> dict:
    content = read_image(req.content, "content")
    if req.model is not None:
        network, rec = job.load()
        r = network.transfer(content, max_side=req.max_side)
    else:
        r = transfer(content, read_image(req.style, "style"), strength=req.strength, steps=req.steps, loss=req.loss,
                     max_side=req.max_side, seed=req.seed, cancel=job.cancelled)
    return {"image": b64(to_png(r.image)), "summary": r.summary()}


SPEC = Capability(
    name="style", summary="A photograph redrawn in another image's texture statistics, or by a style network "
                          "(generate scope).",
    request=StyleRequest, response=StyleResponse, run=run, check=check, in_path=False,
    serves=lambda rec: rec.kind == "stylizer", builtins={OPTIMISER: {"config": {}}}, body_model="model",
    method=lambda req, config: "network" if req.model is not None else "optimise",
    limits=Limits(max_ongoing=1, max_queued=4),
)
