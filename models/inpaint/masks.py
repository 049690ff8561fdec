"""Inpainting masks (True where a pixel is missing), how an inpainting is put together with the
pixels that were seen, and how it is scored: PSNR on the missing region only."""
from __future__ import annotations

import torch
from torch import Tensor

from genray.models.codecs.images import from_png
from genray.models.errors import OptionError

MASKS = ("center", "top", "bottom", "left", "right", "random")


def make_mask(kind: str, height: int, width: int, *, fraction: float = 0.5, seed: int = 0) -> Tensor:
    """A named mask (H, W) of bools, True where missing: the centre square of half the side,
    a half of the image, or `fraction` of the pixels at random (drawn from `seed`)."""
    m = torch.zeros(height, width, dtype=torch.bool)
    if kind == "center":
        h, w = height // 2, width // 2
        top, left = (height - h) // 2, (width - w) // 2
        m[top:top + h, left:left + w] = True
    elif kind == "top":
        m[: height // 2] = True
    elif kind == "bottom":
        m[height - height // 2:] = True
    elif kind == "left":
        m[:, : width // 2] = True
    elif kind == "right":
        m[:, width - width // 2:] = True
    elif kind == "random":
        if not 0 < fraction < 1:
            raise OptionError(f"fraction must be in (0, 1), got {fraction}", "fraction")
        g = torch.Generator().manual_seed(seed)
        m = torch.rand(height, width, generator=g) < fraction
    else:
        raise OptionError(f"mask must be one of {list(MASKS)} or a PNG, got {kind!r}", "mask")
    return m


def mask_from_png(data: bytes, height: int, width: int) -> Tensor:
    """A drawn mask: a greyscale or colour PNG of the image's size, white (>= 128) where missing."""
    try:
        grey = from_png(data, channels=1, size=(width, height))[0]  # (H, W) uint8
    except ValueError as e:
        raise OptionError(f"the mask: {e}", "mask") from None
    except OSError:
        raise OptionError("the mask is not an image Pillow can read", "mask") from None
    return grey >= 128


def per_image(mask: Tensor, batch: int) -> Tensor:
    """A mask (H, W), (B, H, W) or (B, 1, H, W) as (B, 1, H, W) bools; it must leave pixels on both sides."""
    m = mask.bool()
    m = m[None, None] if m.dim() == 2 else (m[:, None] if m.dim() == 3 else m)
    m = m.expand(batch, 1, *m.shape[2:])
    hidden = m.flatten(1).sum(1)
    if bool((hidden == 0).any()) or bool((hidden == m[0].numel()).any()):
        raise OptionError("a mask must hide some pixels and leave some visible", "mask")
    return m


def composite(image: Tensor, fill: Tensor, mask: Tensor) -> Tensor:
    """The seen pixels of `image`, the missing ones from `fill`; all (B, C, H, W), mask (B, 1, H, W)."""
    return torch.where(mask, fill, image)


def masked_psnr(estimate: Tensor, truth: Tensor, mask: Tensor) -> Tensor:
    """PSNR in dB (B,) over each image's missing pixels, for images in [0, 1] (B, C, H, W); an
    exact fill is capped at 100 dB."""
    m = mask.expand_as(truth).float()
    mse = ((estimate - truth).pow(2) * m).flatten(1).sum(1) / m.flatten(1).sum(1)
    return 10.0 * torch.log10(1.0 / mse.clamp(min=1e-10))
