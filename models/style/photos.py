"""The photographs and textures that ship inside scikit-image (skimage.data, no download), by name."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from genray.models.errors import OptionError

CONTENT = ("astronaut", "chelsea", "coffee", "rocket")
STYLES = ("immunohistochemistry", "hubble_deep_field", "brick", "gravel", "grass", "colorwheel")
PHOTOS = CONTENT + STYLES


def photo(name: str) -> Tensor:
    """The named image as (3, H, W) floats in [0, 1] (grey textures repeated to three channels)."""
    if name not in PHOTOS:
        raise OptionError(f"unknown photo {name!r}; built in: {list(PHOTOS)}", "photo")
    import skimage.data

    arr = np.asarray(getattr(skimage.data, name)())
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    t = torch.from_numpy(np.ascontiguousarray(arr[..., :3])).permute(2, 0, 1)
    return t.float() / (65535.0 if t.dtype == torch.uint16 else 255.0)
