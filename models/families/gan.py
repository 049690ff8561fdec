"""Class-conditional DCGAN for 8-bit images: two networks, two optimizers, one train_step; and
the same networks over melodies' piano rolls (music-gan).

A GAN has no likelihood, so eval_nll returns None; its quality is judged on samples.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genray.models.base import LatentImageModel, draw_normal, one_hot, sample_labels
from genray.models.catalog import register
from genray.models.codecs.pianoroll import from_roll
from genray.models.errors import ConfigError, DataError
from genray.models.optim import OptimizerSettings


@register
class ConditionalGAN(LatentImageModel):
    family = "gan"
    nll_unit = None
    # The discriminator step runs the generator without gradients: DDP must allow unused parameters.
    ddp_options = {"find_unused_parameters": True}
    strategies = ("ddp",)  # its train_step drives generator and discriminator itself
    attacks = ("discriminator",)
    explanations = ("attribution", "pdp", "traversal")
    scores_images = True

    def __init__(self, shape: list[int], num_classes: int = 10, latent_dim: int = 64, hidden: int = 64):
        super().__init__(shape, num_classes, latent_dim, hidden)
        C, H, W = self.shape
        h2 = 2 * hidden
        self.generator = nn.Sequential(
            nn.Linear(latent_dim + num_classes, h2 * (H // 4) * (W // 4)), nn.Unflatten(1, (h2, H // 4, W // 4)),
            nn.BatchNorm2d(h2), nn.ReLU(),
            nn.ConvTranspose2d(h2, hidden, 4, 2, 1), nn.BatchNorm2d(hidden), nn.ReLU(),  # (B, h, H/2, W/2)
            nn.ConvTranspose2d(hidden, C, 4, 2, 1), nn.Tanh(),  # (B, C, H, W) in [-1, 1]
        )
        self.discriminator = nn.Sequential(
            nn.Conv2d(C + num_classes, hidden, 4, 2, 1), nn.LeakyReLU(0.2),  # label as constant planes
            nn.Conv2d(hidden, h2, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Flatten(), nn.Linear(h2 * (H // 4) * (W // 4), 1),
        )

    def make_optimizers(self, settings: OptimizerSettings):
        return [settings.adamw(self.generator.parameters()), settings.adamw(self.discriminator.parameters())]

    # ---- core ---------------------------------------------------------------------
    def generate_images(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.generator(torch.cat([z, y], 1))  # (B, C, H, W) in [-1, 1]

    def critic(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        planes = y[:, :, None, None].expand(-1, -1, *x.shape[2:])
        return self.discriminator(torch.cat([x, planes], 1)).squeeze(1)  # (B,) logits

    def forward(self, batch, phase: str = "d"):
        """phase "d": the discriminator's loss on real images and detached fakes;
        phase "g": the generator's non-saturating loss."""
        x = batch["image"].float() / 127.5 - 1.0
        B = x.shape[0]
        labels = batch.get("label")
        y = one_hot(labels, self.num_classes, B, x.device)
        z = torch.randn(B, self.latent_dim, device=x.device)
        if phase == "d":
            with torch.no_grad():
                fake = self.generate_images(z, y)
            real_logit, fake_logit = self.critic(x, y), self.critic(fake, y)
            loss = (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                    + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))
            return {"loss": loss, "d_real": torch.sigmoid(real_logit).mean().detach()}
        fake_logit = self.critic(self.generate_images(z, y), y)
        return {"loss": F.binary_cross_entropy_with_logits(fake_logit, torch.ones_like(fake_logit))}

    def train_step(self, batch, optimizers, forward=None, max_grad_norm=None) -> dict[str, float]:
        forward = forward or self
        opt_g, opt_d = optimizers
        out = {}
        for phase, opt, net in (("d", opt_d, self.discriminator), ("g", opt_g, self.generator)):
            out[phase] = forward(batch, phase=phase)
            opt.zero_grad(set_to_none=True)
            out[phase]["loss"].backward()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(net.parameters(), max_grad_norm)
            opt.step()
        d, g = out["d"], out["g"]
        return {"loss": float(g["loss"].detach()), "d_loss": float(d["loss"].detach()), "d_real": float(d["d_real"])}

    def eval_nll(self, batch):
        return None  # no likelihood

    # ---- generation ---------------------------------------------------------------
    def _sample(self, n: int, gens: list[torch.Generator], *, label: Any = None) -> torch.Tensor:
        """n images (C, H, W) in [0, 1]. A label of None draws the class from the row's generator."""
        z = draw_normal([self.latent_dim], gens, self.device)  # (n, D)
        labels = sample_labels(label, n, self.num_classes, gens)
        was_training = self.training
        self.eval()
        images = self.generate_images(z, one_hot(labels, self.num_classes, n, self.device))
        self.train(was_training)
        return ((images + 1.0) / 2.0).cpu()


@register
class PianoRollGAN(ConditionalGAN):
    """The same GAN over four-bar piano rolls of melodies (data set chorale-bars): channel 0 where
    a pitch sounds, channel 1 where it starts; its samples are note events (MIDI and WAV out)."""
    family = "music-gan"
    modality = "music"
    sample_options = frozenset()
    attacks, explanations, scores_images = (), (), False  # the image GAN's attacks and pictures are of digits

    def __init__(self, shape: list[int], lowest: int = 56, num_classes: int = 0, latent_dim: int = 64,
                 hidden: int = 64):
        super().__init__(shape, num_classes, latent_dim, hidden)
        if shape[0] != 2:
            raise ConfigError(f"a piano roll has 2 channels (sounding, onset), got shape {shape}")
        self.lowest = lowest

    @classmethod
    def default_config(cls, meta: dict) -> dict:
        if meta.get("rows") != "bars":
            raise DataError(f"a music GAN trains on piano-roll rows (data set 'chorale-bars'), not "
                            f"{meta.get('name')!r}")
        return {"family": cls.family, "shape": meta["shape"], "lowest": meta["lowest"]}

    def forward(self, batch, phase: str = "d"):
        """A Wasserstein critic with a gradient penalty (Gulrajani et al., 2017): on one-hot rolls the
        image GAN's cross-entropy critic wins at once and its generator collapses to a few held notes.
        phase "d": the critic's loss; phase "g": the generator's."""
        x = batch["image"].float() / 127.5 - 1.0
        B = x.shape[0]
        y = one_hot(None, 0, B, x.device)
        z = torch.randn(B, self.latent_dim, device=x.device)
        if phase == "g":
            return {"loss": -self.critic(self.generate_images(z, y), y).mean()}
        with torch.no_grad():
            fake = self.generate_images(z, y)
        mix = torch.lerp(fake, x, torch.rand(B, 1, 1, 1, device=x.device)).requires_grad_(True)
        (grad,) = torch.autograd.grad(self.critic(mix, y).sum(), mix, create_graph=True)
        penalty = (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
        real = self.critic(x, y)
        return {"loss": self.critic(fake, y).mean() - real.mean() + 10.0 * penalty, "d_real": real.mean().detach()}

    def generate_images(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Rolls in [-1, 1] like the data's: channel 0 a softmax over the rows of each step (one
        pitch or the rest, as in a melody), channel 1 the onsets."""
        x = self.generator[:-1](torch.cat([z, y], 1))  # (B, 2, rows, steps), before the Tanh
        return torch.cat([2 * x[:, :1].softmax(2) - 1, torch.tanh(x[:, 1:])], 1)

    def _sample(self, n: int, gens: list[torch.Generator], **_: Any) -> list[list[str]]:
        return [from_roll(roll.numpy(), self.lowest) for roll in super()._sample(n, gens)]
