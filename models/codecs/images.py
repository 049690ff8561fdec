"""Image tensors <-> PNG bytes. Tensors are (C, H, W) or (B, C, H, W), float in [0, 1]
or uint8 in [0, 255]; C is 1 (grey) or 3 (RGB)."""
from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image


def _to_uint8(img: torch.Tensor) -> np.ndarray:
    if img.dtype != torch.uint8:
        img = (img.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    arr = img.cpu().numpy()
    return arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)  # (H, W) or (H, W, 3)


def to_png(img: torch.Tensor) -> bytes:
    """One image (C, H, W) to PNG bytes."""
    if img.dim() != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"expected an image of shape (1|3, H, W), got {tuple(img.shape)}")
    buf = io.BytesIO()
    Image.fromarray(_to_uint8(img)).save(buf, format="PNG")
    return buf.getvalue()


EIGHT_BIT_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA")


def from_png(data: bytes, channels: int = 1, size: tuple[int, int] | None = None) -> torch.Tensor:
    """PNG (or any format Pillow reads) bytes to a uint8 tensor (C, H, W). With `size` (W, H), an
    image of another size is refused from its header, before any pixel is decoded; so are
    16-bit and float images, which converting to 8 bits would clip. ValueError for either."""
    try:
        im = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError:
        raise ValueError("the image is far too large") from None
    if size is not None and im.size != tuple(size):
        raise ValueError(f"the image is {im.size[0]}x{im.size[1]} pixels, not {size[0]}x{size[1]}")
    if im.mode not in EIGHT_BIT_MODES:
        raise ValueError(f"the image has {im.mode} pixels; send 8-bit grey or colour images")
    im = im.convert("L" if channels == 1 else "RGB")
    arr = np.array(im, dtype=np.uint8)  # a writable copy
    return torch.from_numpy(arr[None] if channels == 1 else arr.transpose(2, 0, 1).copy())


def grid(images: torch.Tensor, ncol: int | None = None, pad: int = 2) -> torch.Tensor:
    """Tile a batch (B, C, H, W) into one image (C, H', W') with `pad` pixels between tiles."""
    B, C, H, W = images.shape
    ncol = ncol or math.ceil(math.sqrt(B))
    nrow = math.ceil(B / ncol)
    out = torch.zeros((C, nrow * (H + pad) + pad, ncol * (W + pad) + pad), dtype=images.dtype)
    for i in range(B):
        r, c = divmod(i, ncol)
        y, x = pad + r * (H + pad), pad + c * (W + pad)
        out[:, y : y + H, x : x + W] = images[i]
    return out
