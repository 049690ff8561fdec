"""The inpainter behind POST /v1/inpaint/{model}: a VAE or flow model of the registry fills the
hidden pixels of an image (models/inpaint), on a deployment of its own with a short queue, so
that a burst of inpaintings (a hundred or more passes each) waits here rather than in front of
generation."""
from __future__ import annotations

import asyncio

import torch
from ray import serve

from genray.models.codecs.images import from_png, to_png
from genray.models.errors import OptionError
from genray.models.inpaint import MASKS, inpaint, make_mask, mask_from_png, masked_psnr, methods_of, per_image
from genray.models.modalities.base import b64
from genray.services.generate import error_result
from genray.services.workbench import Workbench, from_b64


def run_inpaint(bench: Workbench, ref: str, req: dict) -> dict:
    """The answer to an InpaintRequest's fields (model: the served name), or an error result."""
    try:
        return _inpaint(bench, ref, req)
    except Exception as e:  # noqa: BLE001 - every failure becomes this caller's error result
        return error_result(e)


def _inpaint(bench: Workbench, ref: str, req: dict) -> dict:
    model, rec = bench.model(ref)
    C, H, W = model.shape
    truth = None
    if req.get("index") is not None:
        try:
            val = bench.heldout(rec)["image"]
        except OptionError:
            raise OptionError(f"the data {rec.ref} was trained on is not in this service's data cache; send "
                              f"'image'", "index") from None
        if req["index"] >= len(val):
            raise OptionError(f"index must be below {len(val)} (the test rows of "
                              f"{rec.metrics.get('dataset')}), got {req['index']}", "index")
        image = truth = val[req["index"]][None].float() / 255.0
    else:
        try:
            image = from_png(from_b64(req["image"], "image"), channels=C, size=(W, H))[None].float() / 255.0
        except ValueError as e:
            raise OptionError(f"image: {e}; the model takes images of shape {model.shape}", "image") from None
        except OSError:
            raise OptionError("image is not an image Pillow can read", "image") from None
    kind = req.get("mask", "center")
    mask = (make_mask(kind, H, W, fraction=req.get("fraction", 0.5), seed=req.get("seed", 0)) if kind in MASKS
            else mask_from_png(from_b64(kind, "mask"), H, W))
    method = req.get("method") or methods_of(model)[0]
    out = inpaint(model, image, mask, method=method, steps=req.get("steps", 100), n=req.get("n", 1),
                  seed=req.get("seed", 0), label=req.get("label"))[0]  # (n, C, H, W)
    out = (out * 255).round() / 255  # what the PNGs hold, so that the PSNR is theirs
    psnr = None
    if truth is not None:
        psnr = masked_psnr(out, truth.expand_as(out), per_image(mask, len(out))).tolist()
    return {"method": method, "images": [b64(to_png(img)) for img in out],
            "mask": b64(to_png(mask[None].float())), "psnr": psnr}


@serve.deployment
class InpaintServer:
    def __init__(self, storage_uri: str, refs: dict[str, str], threads: int = 1):
        torch.set_num_threads(threads)
        self.bench = Workbench(storage_uri, refs)

    async def inpaint(self, request: dict) -> dict:
        ref = self.bench.refs[request["model"]]
        return await asyncio.to_thread(run_inpaint, self.bench, ref, request)
