"""Class-conditional convolutional VAE for 8-bit images.

The decoder's likelihood is a discretized logistic per pixel (PixelCNN++), a proper
distribution over the 256 pixel values, so the negative ELBO is an upper bound on the
NLL of the 8-bit image in nats and compares directly with other likelihood models.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genray.models.base import LatentImageModel, draw_normal, one_hot, sample_labels
from genray.models.catalog import register
from genray.models.errors import OptionError


def discretized_logistic_log_prob(x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor,
                                  edges: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """log P(x) per pixel, x in [-1, 1] on the grid of 256 levels; all (B, C, H, W). `edges`
    (bool masks of the lowest and highest level) fixes which pixels take the edge bins' open
    tails instead of deciding it from x: then the function is continuous in x (explanations
    integrate along a path from a baseline)."""
    log_scale = log_scale.clamp(min=-7.0)
    centered = x - mean
    inv_s = torch.exp(-log_scale)
    plus_in = inv_s * (centered + 1.0 / 255)
    min_in = inv_s * (centered - 1.0 / 255)
    log_cdf_plus = plus_in - F.softplus(plus_in)  # log sigmoid(plus_in), used at x = 0
    log_one_minus_cdf_min = -F.softplus(min_in)  # log(1 - sigmoid(min_in)), used at x = 255
    cdf_delta = torch.sigmoid(plus_in) - torch.sigmoid(min_in)
    mid_in = inv_s * centered
    # Where the bin mass underflows, fall back to the density at the centre times the bin width.
    log_pdf_mid = mid_in - log_scale - 2.0 * F.softplus(mid_in) - math.log(127.5)
    log_mid = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp(min=1e-12)), log_pdf_mid)
    low, high = edges if edges is not None else (x < -0.999, x > 0.999)
    return torch.where(low, log_cdf_plus, torch.where(high, log_one_minus_cdf_min, log_mid))


@register
class ConvVAE(LatentImageModel):
    family = "vae"
    nll_unit = "nats/image"
    attacks = ("reconstruction",)
    defenses = ("purify", "detect")
    explanations = ("attribution", "pdp", "traversal")
    inpainting = ("latent", "gibbs")
    encodes = True

    @classmethod
    def capability(cls, name: str, config: dict) -> tuple[str, ...]:
        # The reconstruction attack aims at a class: an unconditional VAE has none.
        if name == "attacks" and not config.get("num_classes", 10):
            return ()
        return super().capability(name, config)

    def __init__(self, shape: list[int], num_classes: int = 10, latent_dim: int = 16, hidden: int = 32):
        super().__init__(shape, num_classes, latent_dim, hidden)
        C, H, W = self.shape
        h2, feat = 2 * hidden, 2 * hidden * (H // 4) * (W // 4)
        self.encoder = nn.Sequential(
            nn.Conv2d(C, hidden, 4, 2, 1), nn.SiLU(),  # (B, h, H/2, W/2)
            nn.Conv2d(hidden, h2, 4, 2, 1), nn.SiLU(),  # (B, 2h, H/4, W/4)
            nn.Flatten(),
        )
        self.to_latent = nn.Linear(feat + num_classes, 2 * latent_dim)
        self.from_latent = nn.Sequential(nn.Linear(latent_dim + num_classes, feat), nn.SiLU(),
                                         nn.Unflatten(1, (h2, H // 4, W // 4)))
        # A class-conditional prior p(z|y) = N(mu_y, I): the KL term pulls each class's posteriors
        # around its own mean, so z ~ p(z|y) decodes to class y even where the decoder leans on z.
        self.prior_mu = nn.Parameter(torch.randn(max(num_classes, 1), latent_dim)) if num_classes else None
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(h2, hidden, 4, 2, 1), nn.SiLU(),  # (B, h, H/2, W/2)
            nn.ConvTranspose2d(hidden, hidden, 4, 2, 1), nn.SiLU(),  # (B, h, H, W)
            nn.Conv2d(hidden, 2 * C, 3, 1, 1),  # mean and log-scale per pixel
        )

    # ---- core ---------------------------------------------------------------------
    def _prior_mean(self, labels: torch.Tensor | None, B: int) -> torch.Tensor:
        if self.prior_mu is None:
            return torch.zeros(B, self.latent_dim, device=self.device)
        return self.prior_mu[labels.long().to(self.device)]  # (B, D)

    def _encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, C, H, W) in [-1, 1], y (B, K) one-hot -> posterior mean and log-variance (B, D) each."""
        mu, logvar = self.to_latent(torch.cat([self.encoder(x), y], 1)).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.decoder(self.from_latent(torch.cat([z, y], 1)))
        # The mean is left unbounded: a tanh here saturates on MNIST's 0/255 pixels and stalls learning.
        mean, log_scale = out.chunk(2, dim=1)  # (B, C, H, W) each
        return mean, log_scale

    def _neg_elbo(self, batch, z_samples: int = 1) -> torch.Tensor:
        """Per-image negative ELBO in nats (B,), or the importance-weighted bound for z_samples > 1."""
        x = batch["image"].float() / 127.5 - 1.0  # (B, C, H, W) in [-1, 1]
        B = x.shape[0]
        if self.num_classes and batch.get("label") is None:
            raise OptionError("this VAE is class-conditional: its likelihood needs each image's label", "label")
        y = one_hot(batch.get("label"), self.num_classes, B, x.device)
        mu, logvar = self._encode(x, y)  # (B, D) each
        std = torch.exp(0.5 * logvar)
        prior_mu = self._prior_mean(batch.get("label"), B)
        bounds = []
        for _ in range(z_samples):
            z = mu + std * torch.randn_like(std)
            mean, log_scale = self.decode(z, y)
            log_px = discretized_logistic_log_prob(x, mean, log_scale).flatten(1).sum(1)
            if z_samples == 1:  # analytic KL
                kl = 0.5 * ((mu - prior_mu).pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
                return -(log_px - kl)
            log_pz = -0.5 * ((z - prior_mu).pow(2) + math.log(2 * math.pi)).sum(1)
            log_qz = -0.5 * (((z - mu) / std).pow(2) + logvar + math.log(2 * math.pi)).sum(1)
            bounds.append(log_px + log_pz - log_qz)
        return -(torch.logsumexp(torch.stack(bounds), 0) - math.log(z_samples))

    def forward(self, batch):
        nelbo = self._neg_elbo(batch)
        return {"loss": nelbo.mean() / math.prod(self.shape)}  # nats per pixel: lr-friendly scale

    @torch.no_grad()
    def eval_nll(self, batch) -> tuple[float, int]:
        return float(self._neg_elbo(batch).sum()), batch["image"].shape[0]

    @torch.no_grad()
    def heldout_nll(self, batch, z_samples: int = 128) -> tuple[float, int]:
        """The importance-weighted bound with z_samples draws (Burda et al., 2016): far tighter
        than the ELBO, and like it an upper bound on the discretized 8-bit NLL."""
        return float(self._neg_elbo(batch, z_samples).sum()), batch["image"].shape[0]

    def log_prob(self, x: torch.Tensor, labels: torch.Tensor | None = None, z_samples: int = 1) -> torch.Tensor:
        """Lower bound on log P(x) for uint8 images (B, C, H, W); tighter as z_samples grows."""
        return -self._neg_elbo({"image": x, "label": labels}, z_samples)

    # ---- analysis by synthesis (differentiable in the image: attacks and purification) ------------
    def _signed(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 in [0, 255] or float in [0, 1] -> float in [-1, 1], the scale the model works on
        (a float image keeps its precision, for gradient checks on a double model)."""
        x = images / 255.0 if images.dtype == torch.uint8 else images
        return (x if x.is_floating_point() else x.float()).to(self.device) * 2.0 - 1.0

    def _mean_elbo(self, x: torch.Tensor, labels: torch.Tensor | None,
                   edges: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """ELBO (B,) with z at the posterior mean: deterministic, so that gradient steps on x see
        one fixed function. x (B, C, H, W) in [-1, 1]; the discretized logistic is evaluated at
        continuous x, which is what a perturbed image needs; `edges` as in discretized_logistic_log_prob."""
        B = x.shape[0]
        y = one_hot(labels, self.num_classes, B, x.device)  # (B, K)
        mu, logvar = self._encode(x, y)  # (B, D)
        mean, log_scale = self.decode(mu, y)  # (B, C, H, W)
        log_px = discretized_logistic_log_prob(x, mean, log_scale, edges).flatten(1).sum(1)
        kl = 0.5 * ((mu - self._prior_mean(labels, B)).pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
        return log_px - kl

    def class_log_likelihoods(self, images: torch.Tensor) -> torch.Tensor:
        """Per-class bound on log p(x|y) in nats (B, K) for uint8 or [0, 1] float images, with z
        at the posterior mean; K = 1 for an unconditional VAE. Its argmax is the VAE's own
        classification (analysis by synthesis); gradients flow to float images."""
        x = self._signed(images)  # (B, C, H, W)
        B, K = x.shape[0], max(self.num_classes, 1)
        if not self.num_classes:
            return self._mean_elbo(x, None)[:, None]  # (B, 1)
        labels = torch.arange(K, device=x.device).repeat_interleave(B)  # (K*B,) class-major
        return self._mean_elbo(x.repeat(K, 1, 1, 1), labels).view(K, B).t()  # (B, K)

    def reconstruct(self, x01: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The decoder's mean at the posterior mean, in [0, 1] (B, C, H, W), and the labels it was
        conditioned on (B,): by default each image's most likely class. Differentiable in x01
        (the choice of label is not)."""
        x = self._signed(x01)  # (B, C, H, W)
        B = x.shape[0]
        if labels is None:
            with torch.no_grad():
                labels = self.class_log_likelihoods(x01).argmax(1)  # (B,) zeros when unconditional
        labels = torch.as_tensor(labels, device=x.device).long().expand(B)
        y = one_hot(labels if self.num_classes else None, self.num_classes, B, x.device)
        mu, _ = self._encode(x, y)
        mean, _ = self.decode(mu, y)
        return ((mean + 1.0) / 2.0).clamp(0.0, 1.0), labels

    # ---- generation ---------------------------------------------------------------
    def _sample(self, n: int, gens: list[torch.Generator], *, label: Any = None) -> torch.Tensor:
        """n images (C, H, W) in [0, 1]: the decoder's mean for z ~ p(z|label). A label of None
        draws the class uniformly from the row's own generator."""
        z = draw_normal([self.latent_dim], gens, self.device)  # (n, D)
        y = sample_labels(label, n, self.num_classes, gens)
        if y is not None:
            z = z + self._prior_mean(y, n)
        mean, _ = self.decode(z, one_hot(y, self.num_classes, n, self.device))
        return ((mean + 1.0) / 2.0).clamp(0.0, 1.0).cpu()
