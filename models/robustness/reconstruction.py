"""The reconstruction attack on a VAE (after Tabacof et al., 2016, "Adversarial images for
variational autoencoders"): a small perturbation of x whose reconstruction decodes as a chosen
target digit, so that a VAE used as a compressor or as a purifier hands on the attacker's class.

genray's ConvVAE is class-conditional and reconstructs through its most likely class (analysis by
synthesis), so the attack has two handles, both pushed at once by projected gradient descent:

- the class: the cross-entropy of the per-class ELBOs toward the target, so that the VAE
  reconstructs through the target's label;
- the latent: the squared distance of the posterior mean (encoded with the target's label) to
  the target class's prior mean, whose decoding is that class's prototype (Tabacof et al. match
  a target image's latent; with no target image, the class prior's mean stands in).

The classifier only judges the reconstructions: it takes no part in the attack.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genray.models.base import one_hot
from genray.models.errors import OptionError
from genray.models.robustness.attacks import check_budget

LATENT_WEIGHT = 0.3  # on the squared latent distance, next to the class cross-entropy (chosen on digits)


@dataclass
class ReconstructionAttackResult:
    x_adv: Tensor  # (B, C, H, W) in [0, 1]
    recon: Tensor  # (B, C, H, W) reconstructions of x_adv
    clean_recon: Tensor  # (B, C, H, W) reconstructions of x
    recon_pred: Tensor  # (B,) the classifier's class of recon
    clean_recon_pred: Tensor  # (B,)
    target: Tensor  # (B,)
    success: Tensor  # (B,) bool: recon_pred == target
    linf: Tensor  # (B,) perturbation norms
    l2: Tensor

    def summary(self) -> dict:
        moved = self.clean_recon_pred != self.target  # inputs the attack had to move to the target
        return {"n": len(self.target), "target_rate": float(self.success.float().mean()),
                "clean_target_rate": float((~moved).float().mean()),
                # the rate among inputs whose clean reconstruction was another class
                "moved_rate": float(self.success[moved].float().mean()) if moved.any() else None,
                "mean_l2": float(self.l2.mean()), "mean_linf": float(self.linf.mean())}


def check(vae, eps: float, norm: str, steps: int, target, step_size: float | None) -> None:
    """OptionError, naming the field, for settings the attack cannot run with."""
    from genray.models.families.vae import ConvVAE

    if not isinstance(vae, ConvVAE):
        raise OptionError(f"the reconstruction attack needs a ConvVAE, got {type(vae).__name__}", "model")
    if not vae.num_classes:
        raise OptionError("the reconstruction attack aims at a class: the VAE must be class-conditional", "model")
    check_budget(eps, norm, steps, step_size)
    for t in np.atleast_1d(np.asarray(target)):
        if not 0 <= int(t) < vae.num_classes:
            raise OptionError(f"target must be in [0, {vae.num_classes - 1}], got {t}", "target")


def _loss(vae, x_adv: Tensor, target: Tensor) -> Tensor:
    """Per-image loss (B,) to minimise: the class cross-entropy plus the weighted latent distance."""
    ce = F.cross_entropy(vae.class_log_likelihoods(x_adv), target, reduction="none")
    mu, _ = vae._encode(x_adv * 2 - 1, one_hot(target, vae.num_classes, len(target), x_adv.device))  # (B, D)
    return ce + LATENT_WEIGHT * (mu - vae.prior_mu[target]).pow(2).sum(1)


def _project(delta: Tensor, x: Tensor, eps: float, norm: str) -> Tensor:
    """Into the eps-ball of norm, then into the image box [0, 1]."""
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        scale = (eps / delta.flatten(1).norm(dim=1).clamp(min=1e-12)).clamp(max=1.0)
        delta = delta * scale.view(-1, 1, 1, 1)
    return (x + delta).clamp(0, 1) - x


def reconstruction_attack(vae, x: Tensor, *, target: int | Tensor, classifier, eps: float, norm: str = "l2",
                          steps: int = 100, step_size: float | None = None, seed: int = 0,
                          batch_size: int = 256) -> ReconstructionAttackResult:
    """Perturbations of x (B, C, H, W) in [0, 1] within the eps-ball of `norm` whose VAE
    reconstructions `classifier` reads as `target` (one class, or one per input). `step_size`
    defaults to 2.5 * eps / steps (Madry et al.); `seed` draws a small random start (uniform,
    a tenth of eps per pixel, projected into the ball) that breaks ties at flat pixels."""
    check(vae, eps, norm, steps, target, step_size)
    step_size = 2.5 * eps / steps if step_size is None else step_size
    device = vae.device
    was_training = vae.training
    vae.eval()
    x = x.detach().float().to(device).clamp(0, 1)
    tgt = torch.as_tensor(target, device=device).long().expand(len(x)).clone()  # (B,)
    g = torch.Generator().manual_seed(seed)
    start = 0.1 * eps * (2 * torch.rand(x.shape, generator=g) - 1).to(device)
    delta = _project(start, x, eps, norm)
    parts = []
    for i in range(0, len(x), batch_size):
        xb, tb, d = x[i:i + batch_size], tgt[i:i + batch_size], delta[i:i + batch_size]
        for _ in range(steps):
            d = d.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(_loss(vae, xb + d, tb).sum(), d)
            with torch.no_grad():
                if norm == "linf":
                    d = d - step_size * grad.sign()
                else:
                    d = d - step_size * grad / grad.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, 1, 1, 1)
                d = _project(d, xb, eps, norm)
        parts.append(d.detach())
    delta = torch.cat(parts)
    x_adv = (x + delta).clamp(0, 1)
    cdev = next(classifier.parameters()).device
    with torch.no_grad():
        recon = torch.cat([vae.reconstruct(x_adv[i:i + batch_size])[0] for i in range(0, len(x), batch_size)])
        clean_recon = torch.cat([vae.reconstruct(x[i:i + batch_size])[0] for i in range(0, len(x), batch_size)])
        recon_pred = torch.cat([classifier(recon[i:i + batch_size].to(cdev)).argmax(1).to(device)
                                for i in range(0, len(x), batch_size)])
        clean_pred = torch.cat([classifier(clean_recon[i:i + batch_size].to(cdev)).argmax(1).to(device)
                                for i in range(0, len(x), batch_size)])
    vae.train(was_training)
    flat = (x_adv - x).flatten(1)
    return ReconstructionAttackResult(x_adv=x_adv.cpu(), recon=recon.cpu(), clean_recon=clean_recon.cpu(),
                                      recon_pred=recon_pred.cpu(), clean_recon_pred=clean_pred.cpu(),
                                      target=tgt.cpu(), success=(recon_pred == tgt).cpu(),
                                      linf=flat.abs().max(1).values.cpu(), l2=flat.norm(dim=1).cpu())
