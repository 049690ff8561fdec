"""Texture statistics from a multi-scale random-filter CNN, and the style and content losses built
on them.

No pretrained VGG can be downloaded here. Ustyuzhaninov et al. (2017) showed that a single layer
of random filters at several sizes, with a ReLU, carries enough texture statistics for
Gatys-style synthesis. RandomFeatures applies filters of sizes 3, 5, 7 and 11 to the image and to
its half- and quarter-size copies; the Gram matrices (or the channel means and standard
deviations) of those feature maps are the style, the finest feature maps the content. The network
is fixed by its seed: a second seed gives an independent yardstick for scoring a transfer that
was optimised on the first.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SIZES = (3, 5, 7, 11)
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # photographs' mean colour: centre the input


class RandomFeatures(nn.Module):
    """images (B, 3, H, W) in [0, 1] -> feature maps [(B, filters, h, w)], one per filter size and scale."""

    def __init__(self, filters: int = 64, scales: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.scales, self.seed = scales, seed
        self.convs = nn.ModuleList()
        for k in SIZES:
            conv = nn.Conv2d(3, filters, k, padding=k // 2, padding_mode="replicate")
            fan_in = 3 * k * k
            with torch.no_grad():
                conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                conv.bias.zero_()
            self.convs.append(conv)
        self.requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = x - MEAN.to(x.device)
        out = []
        for s in range(self.scales):
            if s:
                x = F.avg_pool2d(x, 2)
            out += [F.relu(conv(x)) for conv in self.convs]
        return out


def gram(f: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, C, C), normalised by the number of positions."""
    B, C, H, W = f.shape
    flat = f.flatten(2)  # (B, C, HW)
    return flat @ flat.transpose(1, 2) / (H * W)


def stats(f: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 2C): each channel's mean and standard deviation."""
    flat = f.flatten(2)
    return torch.cat([flat.mean(2), flat.std(2)], 1)


STYLE_LOSSES = ("gram", "stats")


def style_targets(features: list[Tensor], kind: str = "gram") -> list[Tensor]:
    return [gram(f) if kind == "gram" else stats(f) for f in features]


def style_distance(features: list[Tensor], targets: list[Tensor], kind: str = "gram") -> Tensor:
    """Mean over feature maps of the squared distance of the statistics to the targets, each map's
    relative to its target's squared norm (so that every scale counts alike): (B,)."""
    terms = []
    for f, t in zip(features, targets):
        s = gram(f) if kind == "gram" else stats(f)
        terms.append((s - t).pow(2).flatten(1).sum(1) / t.pow(2).flatten(1).sum(1).clamp(min=1e-12))
    return torch.stack(terms).mean(0)


def content_distance(features: list[Tensor], targets: list[Tensor], maps: int = 4) -> Tensor:
    """Relative squared distance of the first `maps` feature maps (the full-size ones): (B,)."""
    terms = [(f - t).pow(2).flatten(1).sum(1) / t.pow(2).flatten(1).sum(1).clamp(min=1e-12)
             for f, t in zip(features[:maps], targets[:maps])]
    return torch.stack(terms).mean(0)
