"""RealNVP-style normalizing flow for 8-bit images: affine coupling layers with alternating
checkerboard masks and convolutional scale/shift networks, on uniformly dequantized pixels
through a logit transform. The log-likelihood is exact for the dequantized density, which
bounds the NLL of the discrete 8-bit image from above (reported in nats per image).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from models.base import GenerativeModel, draw_normal, generators, per_row, register

ALPHA = 0.05  # logit(ALPHA + (1 - 2 ALPHA) y) keeps the transform away from 0 and 1


def checkerboard(H: int, W: int, parity: int) -> torch.Tensor:
    return ((torch.arange(H)[:, None] + torch.arange(W)[None, :] + parity) % 2).float()[None, None]  # (1,1,H,W)


class Coupling(nn.Module):
    """y = x on the mask, x * exp(s(x_masked)) + t(x_masked) off it."""

    def __init__(self, channels: int, hidden: int, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)
        self.net = nn.Sequential(
            nn.Conv2d(channels + 1, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1), nn.ReLU(),
            nn.Conv2d(hidden, 2 * channels, 3, padding=1),
        )
        nn.init.zeros_(self.net[-1].weight)  # start as the identity
        nn.init.zeros_(self.net[-1].bias)
        self.scale = nn.Parameter(torch.ones(1, channels, 1, 1))

    def _st(self, x_masked: torch.Tensor):
        mask = self.mask.expand(x_masked.shape[0], 1, *x_masked.shape[2:])
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
    sample_options = frozenset({"temperature", "seed"})
    nll_unit = "nats/image"

    def __init__(self, shape: list[int], n_coupling: int = 8, hidden: int = 32, lr: float = 3e-4):
        super().__init__()
        C, H, W = shape
        self.shape = [C, H, W]
        self.hparams = dict(n_coupling=n_coupling, hidden=hidden, lr=lr)
        self.couplings = nn.ModuleList(Coupling(C, hidden, checkerboard(H, W, i % 2)) for i in range(n_coupling))

    def config(self) -> dict:
        return {"family": self.family, "shape": self.shape, **self.hparams}

    @classmethod
    def default_config(cls, meta: dict) -> dict:
        return {"family": cls.family, "shape": meta["shape"]}

    def make_optimizers(self, lr: float | None = None):
        return [torch.optim.Adam(self.parameters(), lr=lr or self.hparams["lr"])]

    def _nll(self, images: torch.Tensor) -> torch.Tensor:
        """Per-image NLL bound in nats (B,) for uint8 images, one uniform dequantization draw."""
        D = math.prod(self.shape)
        y = (images.float() + torch.rand_like(images, dtype=torch.float)) / 256.0  # (B, C, H, W) in (0, 1)
        p = ALPHA + (1 - 2 * ALPHA) * y
        z = torch.log(p) - torch.log1p(-p)
        # log|dz/dy| of the logit transform, per pixel: log(1 - 2a) - log p - log(1 - p)
        logdet = (math.log(1 - 2 * ALPHA) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
        for c in self.couplings:
            z, ld = c(z)
            logdet = logdet + ld
        log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).flatten(1).sum(1)
        return -(log_pz + logdet) + D * math.log(256.0)

    def forward(self, batch):
        return {"loss": self._nll(batch["image"]).mean() / math.prod(self.shape)}  # nats per pixel

    @torch.no_grad()
    def eval_nll(self, batch) -> tuple[float, int]:
        return float(self._nll(batch["image"]).sum()), batch["image"].shape[0]

    @torch.no_grad()
    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Lower bound on log P(x) for uint8 images (B, C, H, W), one dequantization draw."""
        return -self._nll(x)

    @torch.no_grad()
    def sample(self, n: int, *, temperature: Any = 1.0, generator=None, **_) -> torch.Tensor:
        """n images (n, C, H, W) in [0, 1]; temperature scales the latent's standard deviation."""
        gens = generators(generator, n)
        temps = torch.tensor([float(t) for t in per_row(temperature, n)]).view(n, 1, 1, 1)
        z = draw_normal(self.shape, gens) * temps  # (n, C, H, W)
        for c in reversed(self.couplings):
            z = c.inverse(z)
        p = torch.sigmoid(z)
        return ((p - ALPHA) / (1 - 2 * ALPHA)).clamp(0.0, 1.0)
