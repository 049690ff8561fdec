"""Likelihood-based detection of adversarial and out-of-distribution inputs: flag an image whose
negative log-likelihood under a generative model of the training data is too high (the detector
of PixelDefend, Song et al., 2018). Likelihoods are known to fail on some shifts (Nalisnick et
al., 2019: simpler images can look *more* likely), so report AUROC per kind of anomaly rather
than trust one number.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from genray.models.errors import OptionError


def _uint8(x01: Tensor) -> Tensor:
    """Images in [0, 1] (or already uint8) -> uint8 (B, C, H, W), the models' likelihood input."""
    if x01.dtype == torch.uint8:
        return x01
    return (x01.float().clamp(0, 1) * 255).round().to(torch.uint8)


def anomaly_scores(model, x01: Tensor, batch_size: int = 256, *, samples: int = 4, seed: int = 0) -> Tensor:
    """Negative log-likelihood in bits per dimension (B,), higher = more anomalous, for images
    x01 (B, C, H, W) in [0, 1] (or uint8) rounded to the 256 levels.

    RealNVP: its dequantized likelihood, log-mean-exp over `samples` dequantization draws.
    ConvVAE: log p(x) = logsumexp_y log p(x|y) - log K, each class's term the importance-weighted
    bound with `samples` draws (one term for an unconditional VAE). The draws come from a fork of
    the random state seeded with `seed`: the same images always score the same, and the caller's
    random stream is left as it was."""
    from genray.models.families.flow import RealNVP
    from genray.models.families.vae import ConvVAE

    if not isinstance(model, (ConvVAE, RealNVP)):
        raise OptionError(f"anomaly scores need a ConvVAE or a RealNVP flow, got {type(model).__name__}", "model")
    if not 1 <= samples <= 1024:
        raise OptionError(f"samples must be in [1, 1024], got {samples}", "samples")
    images = _uint8(x01)
    D = math.prod(images.shape[1:])
    device = model.device
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad(), torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(0, len(images), batch_size):
            xb = images[i:i + batch_size].to(device)  # (b, C, H, W) uint8
            if isinstance(model, RealNVP):
                lp = torch.stack([model.log_prob(xb) for _ in range(samples)])  # (S, b)
                lp = torch.logsumexp(lp, 0) - math.log(samples)
            elif model.num_classes:
                per_class = torch.stack([model.log_prob(xb, torch.full((len(xb),), k, device=device), samples)
                                         for k in range(model.num_classes)], 1)  # (b, K)
                lp = torch.logsumexp(per_class, 1) - math.log(model.num_classes)
            else:
                lp = model.log_prob(xb, None, samples)
            out.append(-lp.cpu() / (D * math.log(2)))
    model.train(was_training)
    return torch.cat(out)


def auroc(normal: Tensor, anomalous: Tensor) -> float:
    """Area under the ROC curve for telling anomalous scores from normal ones (1 = perfect, 0.5 = chance)."""
    from sklearn.metrics import roc_auc_score

    if not len(normal) or not len(anomalous):
        raise OptionError("AUROC needs at least one normal and one anomalous score", "scores")
    scores = np.concatenate([np.asarray(normal, dtype=np.float64), np.asarray(anomalous, dtype=np.float64)])
    truth = np.concatenate([np.zeros(len(normal)), np.ones(len(anomalous))])
    return float(roc_auc_score(truth, scores))


def threshold(normal_scores: Tensor, fpr: float = 0.05) -> float:
    """The score above which a fraction `fpr` of normal inputs lies: flag inputs that exceed it."""
    if not 0 < fpr < 1:
        raise OptionError(f"fpr must be in (0, 1), got {fpr}", "fpr")
    return float(np.quantile(np.asarray(normal_scores, dtype=np.float64), 1.0 - fpr))


def ood_sets(shape: list[int], n: int, seed: int = 0, x: Tensor | None = None) -> dict[str, Tensor]:
    """Out-of-distribution images (n, C, H, W) in [0, 1] for a model of `shape` [C, H, W]:

    "noise": uniform pixels; "digits-upscaled": sklearn's 8x8 digits resized to H x W (left out
    for an 8x8 model, whose data they are); "inverted": 1 - x, only where in-distribution images
    x are given (dark digits on a light ground for a model of light on dark)."""
    if len(shape) != 3 or min(shape) < 1:
        raise OptionError(f"shape must be [C, H, W], got {shape}", "shape")
    if n < 1:
        raise OptionError(f"n must be at least 1, got {n}", "n")
    C, H, W = (int(s) for s in shape)
    g = torch.Generator().manual_seed(seed)
    sets = {"noise": torch.rand(n, C, H, W, generator=g)}
    if (H, W) != (8, 8):
        import torch.nn.functional as F
        from sklearn.datasets import load_digits

        digits = torch.as_tensor(load_digits().images, dtype=torch.float32)[:, None] / 16.0  # (N, 1, 8, 8)
        idx = torch.randint(len(digits), (n,), generator=g)
        up = F.interpolate(digits[idx], size=(H, W), mode="bilinear", align_corners=False)  # (n, 1, H, W)
        sets["digits-upscaled"] = up.clamp(0, 1).expand(n, C, H, W).contiguous()
    if x is not None:
        if list(x.shape[1:]) != [C, H, W]:
            raise OptionError(f"x must be (B, {C}, {H}, {W}), got {tuple(x.shape)}", "x")
        xs = x[:n].float() / 255.0 if x.dtype == torch.uint8 else x[:n].float()
        sets["inverted"] = 1.0 - xs
    return sets


def likelihood_bits(model, x01: Tensor) -> Tensor:
    """A differentiable stand-in for anomaly_scores (B,), bits per dimension, for an attacker who
    knows the detector: the flow's log-density at the bin centres; for the VAE, logsumexp over
    classes of its posterior-mean ELBOs, minus log K."""
    from genray.models.families.flow import RealNVP
    from genray.models.robustness.purify import flow_log_density

    D = math.prod(x01.shape[1:])
    if isinstance(model, RealNVP):
        lp = flow_log_density(model, x01)
    else:
        per_class = model.class_log_likelihoods(x01)  # (B, K)
        lp = torch.logsumexp(per_class, 1) - math.log(per_class.shape[1])
    return -lp / (D * math.log(2))


def evasive_pgd(classifier, detector, x: Tensor, y: Tensor, *, eps: float, threshold: float, steps: int = 100,
                weights: tuple[float, ...] = (1.0, 10.0, 100.0), restarts: int = 2, seed: int = 0) -> Tensor:
    """The attack of Carlini & Wagner (2017, "Adversarial examples are not easily detected") on a
    likelihood detector, in an L-inf ball of radius eps: PGD on the joint loss

        max(z_y - max_{j != y} z_j, 0) + weight * max(bits(x') - threshold, 0)

    (the classifier's logit margin, and how far the detector's differentiable bits/dim lie above
    the threshold it flags at), from the clean input, then from `restarts - 1` starts drawn near it
    (within eps / 4), for each weight in turn. Each image keeps the first point found that is both
    misclassified and under the threshold, else the lowest joint loss. Returns (B, C, H, W) in [0, 1]."""
    from genray.models.robustness.attacks import check_budget

    check_budget(eps, "linf", steps)
    if restarts < 1:
        raise OptionError(f"restarts must be at least 1, got {restarts}", "restarts")
    classifier.eval()
    detector.eval()
    x, y = x.detach().float(), torch.as_tensor(y).long()
    g = torch.Generator().manual_seed(seed)
    best = x.clone()
    best_loss = torch.full((len(x),), float("inf"))
    done = torch.zeros(len(x), dtype=torch.bool)
    step = 2.5 * eps / steps
    for weight in weights:
        for r in range(restarts):
            idx = (~done).nonzero().squeeze(1)
            if not len(idx):
                return best
            xi, yi = x[idx], y[idx]
            delta = torch.zeros_like(xi) if r == 0 else (torch.rand(xi.shape, generator=g) * 2 - 1) * eps / 4
            delta = (xi + delta).clamp(0, 1) - xi
            for _ in range(steps):
                delta.requires_grad_(True)
                x_adv = xi + delta
                logits = classifier(x_adv)
                true = logits.gather(1, yi[:, None]).squeeze(1)
                other = logits.scatter(1, yi[:, None], float("-inf")).max(1).values
                excess = (likelihood_bits(detector, x_adv) - threshold).clamp(min=0)
                loss = (true - other).clamp(min=0) + weight * excess  # (b,)
                (grad,) = torch.autograd.grad(loss.sum(), delta)
                with torch.no_grad():
                    found = (true < other) & (excess == 0) & ~done[idx]
                    if found.any():  # kept at once: a later step may leave the region again
                        best[idx[found]], done[idx[found]] = x_adv[found].detach(), True
                    better = (loss < best_loss[idx]) & ~done[idx]
                    best[idx[better]], best_loss[idx[better]] = x_adv[better].detach(), loss[better].detach()
                    delta = (delta - step * grad.sign()).clamp(-eps, eps)
                    delta = (xi + delta).clamp(0, 1) - xi
    return best
