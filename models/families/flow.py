"""RealNVP-style normalizing flow for 8-bit images: affine coupling layers with convolutional
scale/shift networks, on uniformly dequantized pixels through a logit transform. The first
scale alternates checkerboard masks; with scales=2 the image is then squeezed (each 2x2 block
becomes 4 channels) and couplings alternate channel and checkerboard masks, so that the
networks see wider context (Dinh et al., 2017). The log-likelihood is exact for the dequantized
density, which bounds the NLL of the discrete 8-bit image from above (nats per image).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from genray.models.base import GenerativeModel, draw_normal, per_row
from genray.models.catalog import register
from genray.models.errors import ConfigError

ALPHA = 0.05  # logit(ALPHA + (1 - 2 ALPHA) y) keeps the transform away from 0 and 1


def checkerboard(H: int, W: int, parity: int) -> torch.Tensor:
    return ((torch.arange(H)[:, None] + torch.arange(W)[None, :] + parity) % 2).float()[None, None]  # (1,1,H,W)


def channel_mask(C: int, parity: int) -> torch.Tensor:
    return ((torch.arange(C) < C // 2) ^ bool(parity)).float().view(1, C, 1, 1)  # (1, C, 1, 1)


def squeeze(x: torch.Tensor) -> torch.Tensor:
    B, C, H, W = x.shape  # -> (B, 4C, H/2, W/2)
    return x.view(B, C, H // 2, 2, W // 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(B, 4 * C, H // 2, W // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    B, C4, H, W = x.shape  # -> (B, C/4, 2H, 2W)
    return x.view(B, C4 // 4, 2, 2, H, W).permute(0, 1, 4, 2, 5, 3).reshape(B, C4 // 4, 2 * H, 2 * W)


class Coupling(nn.Module):
    """y = x on the mask, x * exp(s(x_masked)) + t(x_masked) off it. The mask is a checkerboard
    (1, 1, H, W) or a channel split (1, C, 1, 1); the network also sees the mask itself."""

    def __init__(self, channels: int, hidden: int, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = nn.Sequential(
            nn.Conv2d(channels + mask.shape[1], hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, 2 * channels, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)  # start as the identity
        nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(1, channels, 1, 1))

    def _st(self, x_masked: torch.Tensor):
        mask = self.mask.expand(x_masked.shape[0], self.mask.shape[1], *x_masked.shape[2:])
        s, t = self.net(torch.cat([x_masked, mask], 1)).chunk(2, dim=1)
        s = self.scale * torch.tanh(s)
        inv = 1.0 - self.mask
        return s * inv, t * inv

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self._st(x * self.mask)
        return x * torch.exp(s) + t, s.flatten(1).sum(1)  # (B, C, H, W), log|det| (B,)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        s, t = self._st(y * self.mask)
        return (y - t) * torch.exp(-s)


@register
class RealNVP(GenerativeModel):
    family = "flow"
    modality = "image"
    defenses = ("purify", "detect")
    explanations = ("attribution",)
    inpainting = ("map", "langevin")
    sample_options = frozenset({"temperature"})
    nll_unit = "nats/image"

    def __init__(self, shape: list[int], n_coupling: int = 8, hidden: int = 32, scales: int = 1):
        super().__init__()
        C, H, W = shape
        if scales not in (1, 2) or (scales == 2 and (H % 2 or W % 2)):
            raise ConfigError("scales must be 1, or 2 for an image of even height and width")
        self.shape = [C, H, W]
        layers = [Coupling(C, hidden, checkerboard(H, W, i % 2)) for i in range(n_coupling)]
        if scales == 2:  # after the squeeze: channel masks, then checkerboards, each in both parities
            masks = [channel_mask(4 * C, i % 2) if i < n_coupling // 2 else checkerboard(H // 2, W // 2, i % 2)
                     for i in range(n_coupling)]
            layers += [Coupling(4 * C, hidden, m) for m in masks]
        self.couplings = nn.ModuleList(layers)
        self.squeeze_at = n_coupling if scales == 2 else None  # index of the first squeezed coupling

    @classmethod
    def default_config(cls, meta: dict) -> dict:
        C, H, W = meta["shape"]
        two = H % 2 == 0 and W % 2 == 0
        return {"family": cls.family, "shape": meta["shape"], "scales": 2 if two else 1, "hidden": 64}

    @classmethod
    def search_space(cls, meta: dict) -> dict[str, tuple]:
        return {"lr": ("loguniform", 3e-4, 3e-3), "n_coupling": ("choice", [4, 6, 8]),
                "hidden": ("choice", [16, 32, 64])}

    def flow(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) -> z of the same shape and log|det dz/dx| (B,)."""
        logdet = torch.zeros(x.shape[0], device=x.device)
        for i, c in enumerate(self.couplings):
            if i == self.squeeze_at:
                x = squeeze(x)
            x, ld = c(x)
            logdet = logdet + ld
        return (unsqueeze(x) if self.squeeze_at is not None else x), logdet

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        if self.squeeze_at is not None:
            z = squeeze(z)
        for i in reversed(range(len(self.couplings))):
            z = self.couplings[i].inverse(z)
            if i == self.squeeze_at:
                z = unsqueeze(z)
        return z

    def _nll(self, images: torch.Tensor) -> torch.Tensor:
        """Per-image NLL bound in nats (B,) for uint8 images, one uniform dequantization draw."""
        D = math.prod(self.shape)
        y = (images.float() + torch.rand_like(images, dtype=torch.float)) / 256.0  # (B, C, H, W) in (0, 1)
        p = ALPHA + (1 - 2 * ALPHA) * y
        z = torch.log(p) - torch.log1p(-p)
        # log|dz/dy| of the logit transform, per pixel: log(1 - 2a) - log p - log(1 - p)
        logdet = (math.log(1 - 2 * ALPHA) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
        z, ld = self.flow(z)
        logdet = logdet + ld
        log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).flatten(1).sum(1)
        return -(log_pz + logdet) + D * math.log(256.0)

    def forward(self, batch):
        return {"loss": self._nll(batch["image"]).mean() / math.prod(self.shape)}  # nats per pixel

    @torch.no_grad()
    def eval_nll(self, batch) -> tuple[float, int]:
        return float(self._nll(batch["image"]).sum()), batch["image"].shape[0]

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Lower bound on log P(x) for uint8 images (B, C, H, W), one dequantization draw."""
        return -self._nll(x)

    def _sample(self, n: int, gens: list[torch.Generator], *, temperature: Any = 1.0) -> list[torch.Tensor]:
        """n images (C, H, W) in [0, 1]; temperature scales the latent's standard deviation."""
        temps = torch.tensor([float(t) for t in per_row(temperature, n)], device=self.device).view(n, 1, 1, 1)
        z = draw_normal(self.shape, gens, self.device) * temps  # (n, C, H, W)
        p = torch.sigmoid(self.inverse(z))
        return list(((p - ALPHA) / (1 - 2 * ALPHA)).clamp(0.0, 1.0).cpu())
