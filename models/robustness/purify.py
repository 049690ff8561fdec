"""Input purification through a generative model, then classification: the defense family of
Defense-GAN, PixelDefend and MagNet, and how to evaluate it honestly.

A purifier maps an image toward what the generative model finds likely before the classifier
sees it: a ConvVAE reconstructs it (through its most likely class), a RealNVP flow takes a few
gradient-ascent steps on its log-density. Against an attacker who ignores the purifier
(non-adaptive) this looks robust; Athalye et al. (2018) showed that adaptive attacks, which
differentiate through the purifier or approximate its gradient by the identity (BPDA), undo
most of it. `evaluate_purification` reports all of these side by side.

Both purifiers are deterministic (the VAE decodes its posterior mean, the flow's log-density is
taken at the bin centres with no dequantization noise), so Expectation over Transformation
(EOT) has nothing to average: `eot` must stay 1.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from genray.models.errors import OptionError

GRADIENTS = ("full", "bpda")


def flow_log_density(flow, x01: Tensor) -> Tensor:
    """log p(x) in nats (B,) for a RealNVP at the bin centres of images x01 (B, C, H, W) in [0, 1]:
    the dequantized density with the noise at its mean, on the scale of flow.log_prob (which
    subtracts D log 256). Deterministic and differentiable in x01, also between the 256 levels."""
    from genray.models.families.flow import ALPHA

    D = math.prod(flow.shape)
    x01 = x01 if x01.is_floating_point() else x01.float()
    y = (x01 * 255.0 + 0.5) / 256.0  # (B, C, H, W) in (0, 1)
    p = ALPHA + (1 - 2 * ALPHA) * y
    z = torch.log(p) - torch.log1p(-p)
    logdet = (math.log(1 - 2 * ALPHA) - torch.log(p) - torch.log1p(-p)).flatten(1).sum(1)
    z, ld = flow.flow(z)
    log_pz = -0.5 * (z.pow(2) + math.log(2 * math.pi)).flatten(1).sum(1)
    return log_pz + logdet + ld - D * math.log(256.0)


def _family(model) -> str:
    from genray.models.families.flow import RealNVP
    from genray.models.families.vae import ConvVAE

    if isinstance(model, ConvVAE):
        return "vae"
    if isinstance(model, RealNVP):
        return "flow"
    raise OptionError(f"purification needs a ConvVAE or a RealNVP flow, got {type(model).__name__}", "model")


class Purifier(nn.Module):
    """x01 (B, C, H, W) in [0, 1] -> the purified image in [0, 1], differentiable in x01.

    ConvVAE: its reconstruction through its most likely class (`steps` and `step_size` unused).
    RealNVP: `steps` ascent steps of L2 length `step_size` on flow_log_density, each clipped to
    [0, 1]; where the input needs a gradient, the steps keep their graph (create_graph), so an
    adaptive attacker differentiates through the whole ascent."""

    def __init__(self, model: nn.Module, steps: int = 10, step_size: float = 0.1):
        super().__init__()
        self.family = _family(model)
        if not 1 <= steps <= 1000:
            raise OptionError(f"steps must be in [1, 1000], got {steps}", "steps")
        if not step_size > 0:
            raise OptionError(f"step_size must be positive, got {step_size}", "step_size")
        self.model, self.steps, self.step_size = model, steps, step_size

    def forward(self, x01: Tensor) -> Tensor:
        if self.family == "vae":
            return self.model.reconstruct(x01)[0]
        return self._ascend(x01)

    def _ascend(self, x01: Tensor) -> Tensor:
        outer = torch.is_grad_enabled() and x01.requires_grad  # someone differentiates through us
        with torch.enable_grad():
            x = x01 if x01.is_floating_point() else x01.float()
            x = x if outer else x.detach()
            for _ in range(self.steps):
                if not outer:
                    x = x.detach().requires_grad_(True)
                (g,) = torch.autograd.grad(flow_log_density(self.model, x).sum(), x, create_graph=outer)
                g = g / g.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, 1, 1, 1)  # (B, C, H, W) unit L2
                x = (x + self.step_size * g).clamp(0.0, 1.0)
        return x if outer else x.detach()


class Defended(nn.Module):
    """Logits of classifier(purifier(x)) for x (B, C, H, W) in [0, 1]: a model that attack() can
    target. gradient="full" differentiates through the purifier; "bpda" (Athalye et al., 2018)
    purifies in the forward pass and passes the gradient straight through (the identity), for
    purifiers whose gradient is useless, shattered or too dear."""

    def __init__(self, purifier: Purifier, classifier: nn.Module, gradient: str = "full"):
        super().__init__()
        if gradient not in GRADIENTS:
            raise OptionError(f"gradient must be one of {list(GRADIENTS)}, got {gradient!r}", "gradient")
        self.purifier, self.classifier, self.gradient = purifier, classifier, gradient
        self.num_classes = int(classifier.num_classes)

    def forward(self, x01: Tensor) -> Tensor:
        if self.gradient == "full":
            return self.classifier(self.purifier(x01))
        with torch.no_grad():
            purified = self.purifier(x01)
        return self.classifier(x01 + (purified - x01).detach())  # forward: purified; backward: identity


class LabelChoice(nn.Module):
    """The VAE purifier's own decision as a classifier: logits (B, K) = its per-class ELBOs. The
    reconstruction follows the class the VAE finds most likely, so an attack on this choice is
    the adaptive attack on the VAE purifier that its reconstruction's gradient hides."""

    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae, self.num_classes = vae, int(vae.num_classes)

    def forward(self, x01: Tensor) -> Tensor:
        return self.vae.class_log_likelihoods(x01)


def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    from genray.models.robustness.attacks import _predict

    return float((_predict(model, x) == y.cpu()).float().mean())


def evaluate_purification(purifier: Purifier, classifier: nn.Module, x: Tensor, y: Tensor, *, eps: float,
                          norm: str = "linf", steps: int = 40, seed: int = 0, eot: int = 1) -> dict:
    """Accuracies of the classifier with and without the purifier, clean and under PGD (ART's, via
    attack()) at eps in `norm`, on x (B, C, H, W) in [0, 1] with labels y:

    clean, purified_clean: no attack; undefended: PGD on the classifier alone; nonadaptive: those
    same examples, purified; adaptive_bpda: PGD on Defended(gradient="bpda"); adaptive_full: PGD
    through the whole differentiable pipeline; adaptive_label (a class-conditional VAE): PGD on the
    class the VAE reconstructs through (LabelChoice); adaptive: the lowest of these. The
    purifiers are deterministic: eot must be 1."""
    from genray.models.robustness.attacks import attack

    if eot != 1:
        raise OptionError("the purifiers are deterministic, so EOT has nothing to average: eot must be 1", "eot")
    x, y = x.detach().float().cpu().clamp(0, 1), torch.as_tensor(y).long().cpu()
    kw = {"method": "pgd", "eps": eps, "norm": norm, "steps": steps, "seed": seed}
    defended = Defended(purifier, classifier, "full")
    undefended = attack(classifier, x, y, **kw)
    bpda = attack(Defended(purifier, classifier, "bpda"), x, y, **kw)
    full = attack(defended, x, y, **kw)
    out = {"n": len(x), "eps": eps, "norm": norm, "steps": steps,
           "clean": _accuracy(classifier, x, y), "purified_clean": _accuracy(defended, x, y),
           "undefended": undefended.robust_accuracy, "nonadaptive": _accuracy(defended, undefended.x_adv, y),
           "adaptive_bpda": bpda.robust_accuracy, "adaptive_full": full.robust_accuracy}
    if purifier.family == "vae" and purifier.model.num_classes:
        out["adaptive_label"] = _accuracy(defended, attack(LabelChoice(purifier.model), x, y, **kw).x_adv, y)
    out["adaptive"] = min(v for k, v in out.items() if k.startswith("adaptive_"))  # the strongest attack counts
    return out
