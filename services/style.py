"""The style transfer behind POST /v1/style (models/style): optimisation on the pixels, hundreds of
passes of a random-filter network over a photograph each, so one at a time per replica on a
deployment of its own with a short queue; or one pass of a registry style network."""
from __future__ import annotations

import asyncio
import io
import threading

import numpy as np
import torch
from ray import serve

from genray.models.codecs.images import EIGHT_BIT_MODES, to_png
from genray.models.errors import Cancelled, OptionError
from genray.models.modalities.base import b64
from genray.models.style import PHOTOS, photo, transfer
from genray.services.generate import error_result
from genray.services.workbench import Workbench, from_b64

MAX_PIXELS = 4096 * 4096  # an upload's size, checked from its header before decoding


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


def run_style(request: dict, cancel=None, bench: Workbench | None = None) -> dict:
    """The answer to a StyleRequest's fields, or an error result (422 naming the field); `cancel()`
    true stops the optimisation at its next step. A request naming a style network (`model`)
    takes one pass of the registry model that `bench` serves under that name."""
    try:
        content = read_image(request["content"], "content")
        if request.get("model"):
            network, rec = bench.model(bench.refs[request["model"]])
            r = network.transfer(content, max_side=request.get("max_side", 256))
            return {"image": b64(to_png(r.image)), "summary": r.summary(), "model": rec.name,
                    "version": rec.version}
        r = transfer(content, read_image(request["style"], "style"), strength=request.get("strength", 0.8),
                     steps=request.get("steps", 200), loss=request.get("loss", "gram"),
                     max_side=request.get("max_side", 256), seed=request.get("seed", 0), cancel=cancel)
    except Cancelled:  # nobody is waiting for this answer
        return {"error": "the caller went away", "status": 499}
    except Exception as e:  # noqa: BLE001 - every failure becomes this caller's error result
        return error_result(e)
    return {"image": b64(to_png(r.image)), "summary": r.summary()}


@serve.deployment
class StyleServer:
    def __init__(self, storage_uri: str, refs: dict[str, str], threads: int = 1):
        torch.set_num_threads(threads)
        self.bench = Workbench(storage_uri, refs)  # the style networks

    async def style(self, request: dict) -> dict:
        abandoned = threading.Event()
        try:
            return await asyncio.to_thread(run_style, request, abandoned.is_set, self.bench)
        except asyncio.CancelledError:  # the caller timed out or went away: stop optimising for it
            abandoned.set()
            raise
