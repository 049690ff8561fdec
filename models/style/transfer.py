"""Optimisation-based style transfer (Gatys et al., 2016) on RandomFeatures: the image that keeps
the content's fine feature maps and takes the style's texture statistics, by Adam on the pixels
from the content image. Scored by the style distance before and after, on the optimised features
and on an independent random network's, and by content SSIM (scikit-image)."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genray.models.errors import Cancelled, OptionError
from genray.models.style.features import (
    STYLE_LOSSES,
    RandomFeatures,
    content_distance,
    style_distance,
    style_targets,
)

MAX_SIDE = 512
MAX_STEPS = 1000
SCORE_SEED = 1  # a second network of the same architecture: a check on seed overfitting, not an
# independent score (benchmarks/applications.py scores with models/style/texture.py)
DOUBLE_EVERY = 20  # steps between doublings of the style term's weight


def fit_size(image: Tensor, max_side: int) -> Tensor:
    """(3, H, W) in [0, 1], scaled down (never up) so that its longer side is at most max_side."""
    H, W = image.shape[1:]
    scale = min(1.0, max_side / max(H, W))
    if scale == 1.0:
        return image
    size = (max(1, round(H * scale)), max(1, round(W * scale)))
    return F.interpolate(image[None], size=size, mode="area")[0]


def rgb(image: Tensor) -> Tensor:
    """(1|3|4, H, W) -> (3, H, W): grey repeated, alpha dropped."""
    if image.shape[0] == 1:
        return image.expand(3, *image.shape[1:])
    return image[:3]


@dataclass
class Transfer:
    image: Tensor  # (3, H, W) in [0, 1]
    style_before: float  # on the optimised network
    style_after: float
    heldout_before: float  # on the same architecture with another seed (SCORE_SEED)
    heldout_after: float
    ssim: float  # against the content image
    seconds: float

    def summary(self) -> dict:
        return {"style_distance_before": self.style_before, "style_distance_after": self.style_after,
                "style_reduction": 1 - self.style_after / self.style_before,
                "heldout_style_distance_before": self.heldout_before,
                "heldout_style_distance_after": self.heldout_after,
                "heldout_style_reduction": 1 - self.heldout_after / self.heldout_before,
                "content_ssim": self.ssim, "seconds": self.seconds}


def content_ssim(image: Tensor, content: Tensor) -> float:
    """SSIM (scikit-image) of an image (3, H, W) in [0, 1] to the content image."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(image.permute(1, 2, 0).numpy().astype(np.float64),
                                       content.permute(1, 2, 0).numpy().astype(np.float64), channel_axis=2,
                                       data_range=1.0))


def transfer(content: Tensor, style: Tensor, *, strength: float = 0.8, steps: int = 200, loss: str = "gram",
             max_side: int = 256, lr: float = 0.02, seed: int = 0, net: RandomFeatures | None = None,
             cancel: Callable[[], bool] | None = None) -> Transfer:
    """content, style (C, H, W) in [0, 1] (grey or colour, any sizes) -> the content image in the
    style, at most max_side pixels a side (the style is scaled to the same area).

    `strength` in (0, 1] is the share of the style distance to remove: the style term (relative to
    its value at the content image) starts at the content term's weight and doubles every
    DOUBLE_EVERY steps while the distance is above (1 - strength) of where it began, so each pair
    of images finds its own balance and keeps as much content as that share allows. `cancel()` is
    checked at every step: true raises Cancelled (the caller went away)."""
    if loss not in STYLE_LOSSES:
        raise OptionError(f"loss must be one of {list(STYLE_LOSSES)}, got {loss!r}", "loss")
    if not 1 <= steps <= MAX_STEPS:
        raise OptionError(f"steps must be in [1, {MAX_STEPS}], got {steps}", "steps")
    if not 0 < strength <= 1:
        raise OptionError(f"strength must be in (0, 1], got {strength}", "strength")
    t0 = time.perf_counter()
    content, style = prepare(content, style, max_side)
    net = net or RandomFeatures(seed=seed)
    with torch.no_grad():
        s_targets = style_targets(net(style[None]), loss)
        c_targets = net(content[None])
        start = float(style_distance(c_targets, s_targets, loss))
    x = content[None].clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    weight = 1.0
    for step in range(steps):
        if cancel is not None and cancel():
            raise Cancelled("the style transfer was abandoned")
        f = net(x)
        styled = style_distance(f, s_targets, loss).sum() / max(start, 1e-12)  # 1 at the content image
        if step and step % DOUBLE_EVERY == 0 and float(styled.detach()) > 1 - strength:
            weight *= 2.0
        (x.grad,) = torch.autograd.grad(weight * styled + content_distance(f, c_targets).sum(), x)
        opt.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
    return scored(x.detach()[0], content, style, net, s_targets, loss, time.perf_counter() - t0)


@torch.no_grad()
def scored(out: Tensor, content: Tensor, style: Tensor, net: RandomFeatures, targets: list[Tensor], loss: str,
           seconds: float) -> Transfer:
    """A result and its scores: the style distance of the content and of the result, on `net` (with
    the style's `targets` on it) and on an independent network, and content SSIM."""
    judge = RandomFeatures(seed=SCORE_SEED if net.seed != SCORE_SEED else SCORE_SEED + 1)
    j_targets = style_targets(judge(style[None]), loss)
    return Transfer(out, float(style_distance(net(content[None]), targets, loss)),
                    float(style_distance(net(out[None]), targets, loss)),
                    float(style_distance(judge(content[None]), j_targets, loss)),
                    float(style_distance(judge(out[None]), j_targets, loss)), content_ssim(out, content), seconds)


def prepare(content: Tensor, style: Tensor, max_side: int) -> tuple[Tensor, Tensor]:
    """The content at most max_side pixels a side, and the style scaled to the same area."""
    if not 16 <= max_side <= MAX_SIDE:
        raise OptionError(f"max_side must be in [16, {MAX_SIDE}], got {max_side}", "max_side")
    content = fit_size(rgb(content.float()), max_side)
    H, W = content.shape[1:]
    style = fit_size(rgb(style.float()), round(max(style.shape[1:]) * math.sqrt(H * W / math.prod(style.shape[1:]))))
    return content, fit_size(style, MAX_SIDE)
