"""An evasion attack on a GAN's discriminator: real images, perturbed within an eps-ball, that
the discriminator scores as fake. A discriminator reused as a real/fake detector (or as a
feature extractor) is only as trustworthy as its scores under such small changes.

ART's attacks need a classifier; the critic is a single logit, so this wraps it as a two-class
classifier (fake: logit 0, real: the critic's logit) and runs genray's plain-torch PGD, which
raises the cross-entropy of "real", i.e. lowers the critic's logit.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genray.models.base import one_hot, seeded
from genray.models.errors import OptionError
from genray.models.robustness.attacks import check_budget, pgd


@dataclass
class DiscriminatorAttackResult:
    x_adv: Tensor  # (B, C, H, W) in [0, 1]
    real_score: Tensor  # (B,) sigmoid(D) on the clean images
    adv_score: Tensor  # (B,) on x_adv
    fooled: Tensor  # (B,) bool: clean scored real (>= 0.5) and adversarial scored fake (< 0.5)
    linf: Tensor  # (B,) perturbation norms
    l2: Tensor

    def summary(self) -> dict:
        return {"n": len(self.real_score), "real_rate_before": float((self.real_score >= 0.5).float().mean()),
                "real_rate_after": float((self.adv_score >= 0.5).float().mean()),
                "fooled_rate": float(self.fooled.float().mean()), "mean_real_score": float(self.real_score.mean()),
                "mean_adv_score": float(self.adv_score.mean()), "mean_linf": float(self.linf.mean()),
                "mean_l2": float(self.l2.mean())}


class _RealVsFake(nn.Module):
    """The critic as a two-class classifier of images in [0, 1] with fixed labels: logits
    (B, 2) = (0, D(x, y)), class 1 "real"."""

    def __init__(self, gan, y: Tensor):
        super().__init__()
        self.gan, self.y = gan, y  # y (B, K) one-hot

    def forward(self, x: Tensor) -> Tensor:
        d = self.gan.critic(x * 2.0 - 1.0, self.y)  # (B,)
        return torch.stack([torch.zeros_like(d), d], 1)  # (B, 2)


def _check(gan, x, labels, eps: float, norm: str, steps: int, step_size: float | None) -> None:
    """OptionError, naming the field, for settings the attack cannot run with."""
    if not callable(getattr(gan, "critic", None)):
        raise OptionError("the discriminator attack needs a GAN (a model with a critic)", "model")
    check_budget(eps, norm, steps, step_size)
    if not isinstance(x, Tensor) or x.dim() != 4 or list(x.shape[1:]) != list(gan.shape):
        raise OptionError(f"x must be a (B, {', '.join(map(str, gan.shape))}) tensor", "x")
    if x.dtype == torch.uint8 or not bool(((x >= 0) & (x <= 1)).all()):
        raise OptionError("x must be float images in [0, 1]", "x")
    if not gan.num_classes:
        if labels is not None:
            raise OptionError("this GAN is not class-conditional: pass labels=None", "labels")
        return
    if labels is None:
        raise OptionError("this GAN is class-conditional: its discriminator needs each image's label", "labels")
    labels = torch.as_tensor(labels)
    if labels.shape != (len(x),):
        raise OptionError(f"labels must be one per image ({len(x)}), got shape {tuple(labels.shape)}", "labels")
    if len(labels) and not bool(((labels >= 0) & (labels < gan.num_classes)).all()):
        raise OptionError(f"labels must be in [0, {gan.num_classes - 1}]", "labels")


def discriminator_attack(gan, x: Tensor, labels: Tensor | None, *, eps: float, norm: str = "linf", steps: int = 40,
                         step_size: float | None = None, seed: int = 0) -> DiscriminatorAttackResult:
    """Perturb real images x (B, C, H, W) in [0, 1] within the `norm` eps-ball so that the
    discriminator of `gan` (a ConditionalGAN) scores them as fake, by PGD with a random start
    from `seed`. `step_size` defaults to 2.5 * eps / steps (Madry et al.)."""
    _check(gan, x, labels, eps, norm, steps, step_size)
    dev = gan.device
    x = x.detach().float().to(dev)  # (B, C, H, W)
    B = len(x)
    y = one_hot(torch.as_tensor(labels) if gan.num_classes else None, gan.num_classes, B, dev)  # (B, K)
    was_training = gan.training
    clf = _RealVsFake(gan, y).eval()  # eval throughout: pgd() restores the mode it found
    try:
        with torch.no_grad():
            real_score = torch.sigmoid(clf(x)[:, 1])  # (B,)
        x_adv = pgd(clf, x, torch.ones(B, dtype=torch.long, device=dev), eps=eps, steps=steps, step_size=step_size,
                    norm=norm, random_start=True, generator=seeded(seed))
        with torch.no_grad():
            adv_score = torch.sigmoid(clf(x_adv)[:, 1])
    finally:
        gan.train(was_training)
    delta = (x_adv - x).flatten(1)  # (B, D)
    return DiscriminatorAttackResult(x_adv=x_adv.cpu(), real_score=real_score.cpu(), adv_score=adv_score.cpu(),
                                     fooled=((real_score >= 0.5) & (adv_score < 0.5)).cpu(),
                                     linf=delta.abs().max(1).values.cpu(), l2=delta.norm(dim=1).cpu())
