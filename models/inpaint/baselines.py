"""Inpainting baselines that know nothing of a generative model: the training set's mean image,
the training image nearest on the visible pixels, a diffusion (blurred) fill from the mask's
edge, and scikit-image's biharmonic inpainting. Images (B, C, H, W) in [0, 1], masks
(B, 1, H, W) True where missing; each returns the completed images."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genray.models.inpaint.masks import composite

BASELINES = ("mean", "nearest", "blur", "biharmonic")


def mean_fill(x: Tensor, mask: Tensor, train: Tensor) -> Tensor:
    return composite(x, train.float().mean(0, keepdim=True).expand_as(x), mask)


def nearest_fill(x: Tensor, mask: Tensor, train: Tensor, chunk: int = 4096) -> Tensor:
    """Each image's missing pixels from the training image closest to it in L2 on its visible pixels."""
    B = x.shape[0]
    seen = (~mask).expand_as(x).flatten(1).float()  # (B, D)
    xs = x.flatten(1) * seen  # (B, D)
    best_d, best_i = torch.full((B,), float("inf")), torch.zeros(B, dtype=torch.long)
    for start in range(0, len(train), chunk):
        t = train[start:start + chunk].float().flatten(1)  # (N, D)
        # sum over seen pixels of (x - t)^2 = x.x - 2 x.t + seen.(t^2)
        d = xs.pow(2).sum(1, keepdim=True) - 2 * xs @ t.T + seen @ t.pow(2).T  # (B, N)
        v, i = d.min(1)
        better = v < best_d
        best_d, best_i = torch.where(better, v, best_d), torch.where(better, i + start, best_i)
    return composite(x, train[best_i].float(), mask)


def blur_fill(x: Tensor, mask: Tensor, iterations: int = 200) -> Tensor:
    """The missing region relaxed toward the average of its neighbours (a discrete harmonic
    fill): the seen pixels diffuse inward, as a Gaussian blur from the edge would."""
    C = x.shape[1]
    m = mask.expand_as(x)
    seen_mean = (x * ~m).flatten(2).sum(2) / (~m).flatten(2).sum(2).clamp(min=1)  # (B, C)
    out = torch.where(m, seen_mean[..., None, None], x)
    kernel = torch.tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]]).expand(C, 1, 3, 3)
    for _ in range(iterations):
        avg = F.conv2d(F.pad(out, (1, 1, 1, 1), mode="replicate"), kernel, groups=C)
        out = torch.where(m, avg, x)
    return out


def biharmonic_fill(x: Tensor, mask: Tensor) -> Tensor:
    """scikit-image's biharmonic inpainting (skimage.restoration.inpaint_biharmonic), image by image."""
    from skimage.restoration import inpaint_biharmonic

    out = []
    for img, m in zip(x.double().numpy(), mask[:, 0].numpy()):
        filled = inpaint_biharmonic(np.moveaxis(img, 0, -1), m, channel_axis=-1)  # (H, W, C)
        out.append(np.moveaxis(filled, -1, 0))
    return composite(x, torch.from_numpy(np.stack(out)).float().clamp(0, 1), mask)


def baseline_fill(name: str, x: Tensor, mask: Tensor, train: Tensor | None = None) -> Tensor:
    if name == "mean":
        return mean_fill(x, mask, train)
    if name == "nearest":
        return nearest_fill(x, mask, train)
    if name == "blur":
        return blur_fill(x, mask)
    if name == "biharmonic":
        return biharmonic_fill(x, mask)
    raise ValueError(f"unknown baseline {name!r}; one of {BASELINES}")
