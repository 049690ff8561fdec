"""Inpainting with the registry's generative image models, under their own likelihoods.

ConvVAE, method "latent": the latent z (and, unless given, the class) that best explain the
    seen pixels: maximise log p(x_seen | z, y) + log p(z | y) by Adam from the encoder's guess,
    one restart per class, the best kept; the decoder's mean fills the hole.
ConvVAE, method "gibbs": pseudo-Gibbs sampling (Rezende et al., 2014): encode the current
    image, draw z from the posterior, decode, put the decode back into the hole only; repeat.
RealNVP, method "map": the hole's pixels that maximise the flow's exact log-density of the
    whole image (Adam on their logits).
RealNVP, method "langevin": Langevin dynamics on the hole's logits under the same density,
    with a step size annealed toward zero, ending on a short MAP polish.

Images (B, C, H, W) in [0, 1], masks (B, 1, H, W) True where missing; every method returns
(B, n, C, H, W) whose seen pixels are exactly the input's.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from genray.models.base import one_hot
from genray.models.catalog import family_class, family_names
from genray.models.errors import OptionError
from genray.models.inpaint.masks import composite, per_image

MAX_STEPS = 1000


def inpaint_methods(config: dict) -> tuple[str, ...]:
    """The inpainting methods a saved config supports (its family's `inpainting`), the default first."""
    return family_class(config["family"]).capability("inpainting", config)


def methods_of(model) -> tuple[str, ...]:
    """A model's inpainting methods; an OptionError for a model that does not inpaint."""
    config = model.config() if hasattr(model, "config") else {"family": None}
    methods = inpaint_methods(config) if config["family"] else ()
    if not methods:
        able = [n for n in family_names() if family_class(n).inpainting]
        raise OptionError(f"inpainting needs a model of the families {able}, not a "
                          f"{config['family'] or type(model).__name__}", "model")
    return methods


def inpaint(model, images: Tensor, mask: Tensor, *, method: str | None = None, steps: int = 100, n: int = 1,
            seed: int = 0, label: int | None = None) -> Tensor:
    """n completions (B, n, C, H, W) of images (B, C, H, W) in [0, 1] where mask is True (a mask
    (H, W) holds for every image). `label` conditions a class-conditional VAE (default: the
    class that explains the seen pixels best)."""
    methods = methods_of(model)
    method = method or methods[0]
    if method not in methods:
        raise OptionError(f"a {model.family} inpaints by {list(methods)}, not {method!r}", "method")
    if not 1 <= steps <= MAX_STEPS:
        raise OptionError(f"steps must be in [1, {MAX_STEPS}], got {steps}", "steps")
    if label is not None and not 0 <= label < max(getattr(model, "num_classes", 0), 0):
        raise OptionError(f"label must name one of the model's {getattr(model, 'num_classes', 0)} classes "
                          f"(an unconditional model takes none), got {label}", "label")
    x = images.float().to(model.device)
    B = x.shape[0]
    m = per_image(mask.to(model.device), B)
    # n completions of each image, rows image-major: (B*n, C, H, W)
    xr, mr = x.repeat_interleave(n, 0), m.repeat_interleave(n, 0)
    gen = torch.Generator(device=model.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            fill = {"latent": _vae_latent, "gibbs": _vae_gibbs, "map": _flow_map, "langevin": _flow_langevin}[
                method](model, xr, mr, steps, gen, label)
    finally:
        model.train(was_training)
    out = composite(xr, fill.detach().clamp(0.0, 1.0), mr)
    return out.view(B, n, *x.shape[1:]).cpu()


def _step(opt: torch.optim.Optimizer, param: Tensor, loss: Tensor) -> None:
    """One optimiser step on `param` alone (the model's weights get no gradients)."""
    (param.grad,) = torch.autograd.grad(loss, param)
    opt.step()


# ---- VAE ------------------------------------------------------------------------------------
def _classes(vae, label: int | None) -> list[int | None]:
    if not vae.num_classes:
        return [None]
    return [label] if label is not None else list(range(vae.num_classes))


def _seen_log_lik(vae, x: Tensor, seen: Tensor, z: Tensor, y: Tensor) -> Tensor:
    """log p(x_seen | z, y) (R,) under the decoder's discretized logistic; x in [-1, 1]."""
    from genray.models.families.vae import discretized_logistic_log_prob

    mean, log_scale = vae.decode(z, y)  # (R, C, H, W) each
    return (discretized_logistic_log_prob(x, mean, log_scale) * seen).flatten(1).sum(1)


def _vae_latent(vae, x01: Tensor, mask: Tensor, steps: int, gen: torch.Generator, label: int | None) -> Tensor:
    R = x01.shape[0]
    classes = _classes(vae, label)
    K = len(classes)
    x = (x01 * 2.0 - 1.0).repeat(K, 1, 1, 1)  # (K*R, C, H, W) class-major
    seen = (~mask).expand_as(x01).float().repeat(K, 1, 1, 1)
    labels = None if classes == [None] else torch.tensor(classes, device=x.device).repeat_interleave(R)
    y = one_hot(labels, vae.num_classes, K * R, x.device)  # (K*R, K)
    prior = vae._prior_mean(labels, K * R).detach()  # (K*R, D)
    with torch.no_grad():  # start from the encoder's reading of the image with its hole at the background
        mu, logvar = vae._encode(x * seen - (1 - seen), y)
        noise = torch.randn(mu.shape, generator=gen, device=x.device)  # a different start for each completion
    z = (mu + 0.5 * logvar.mul(0.5).exp() * noise).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(steps):
        objective = _seen_log_lik(vae, x, seen, z, y) - 0.5 * (z - prior).pow(2).sum(1)  # (K*R,)
        _step(opt, z, -objective.sum())
    with torch.no_grad():
        objective = _seen_log_lik(vae, x, seen, z, y) - 0.5 * (z - prior).pow(2).sum(1)
        best = objective.view(K, R).argmax(0)  # (R,) the class that explains the seen pixels best
        pick = best * R + torch.arange(R, device=x.device)
        mean, _ = vae.decode(z[pick], y[pick])
    return (mean + 1.0) / 2.0


def _vae_gibbs(vae, x01: Tensor, mask: Tensor, steps: int, gen: torch.Generator, label: int | None) -> Tensor:
    R = x01.shape[0]
    hole = mask.expand_as(x01)
    x = torch.where(hole, torch.rand(x01.shape, generator=gen, device=x01.device), x01)
    with torch.no_grad():
        for step in range(steps):
            if vae.num_classes:
                labels = (torch.full((R,), label, device=x.device) if label is not None
                          else vae.class_log_likelihoods(x).argmax(1))
            else:
                labels = None
            y = one_hot(labels, vae.num_classes, R, x.device)
            mu, logvar = vae._encode(x * 2.0 - 1.0, y)
            last = step == steps - 1  # the last decode from the posterior mean: no noise left in the fill
            z = mu if last else mu + logvar.mul(0.5).exp() * torch.randn(mu.shape, generator=gen, device=x.device)
            mean, _ = vae.decode(z, y)
            x = torch.where(hole, ((mean + 1.0) / 2.0).clamp(0.0, 1.0), x01)
    return x


# ---- flow -----------------------------------------------------------------------------------
def _logits(x01: Tensor, mask: Tensor, gen: torch.Generator) -> Tensor:
    """The hole's starting logits: each image's mean seen value, jittered."""
    hole = mask.expand_as(x01)
    seen_mean = (x01 * ~hole).flatten(1).sum(1) / (~hole).flatten(1).sum(1).clamp(min=1)  # (R,)
    start = seen_mean.view(-1, 1, 1, 1).expand_as(x01).clamp(0.05, 0.95)
    u = torch.log(start) - torch.log1p(-start)
    return u + 0.1 * torch.randn(u.shape, generator=gen, device=u.device)


def _flow_density(flow, x01: Tensor, mask: Tensor, u: Tensor) -> Tensor:
    from genray.models.robustness.purify import flow_log_density

    return flow_log_density(flow, composite(x01, torch.sigmoid(u), mask.expand_as(x01)))  # (R,)


def _flow_map(flow, x01: Tensor, mask: Tensor, steps: int, gen: torch.Generator, label: int | None,
              u: Tensor | None = None) -> Tensor:
    u = (_logits(x01, mask, gen) if u is None else u).detach().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=0.1)
    for _ in range(steps):
        _step(opt, u, -_flow_density(flow, x01, mask, u).sum())
    return torch.sigmoid(u)


def _flow_langevin(flow, x01: Tensor, mask: Tensor, steps: int, gen: torch.Generator, label: int | None) -> Tensor:
    """Unadjusted Langevin on the hole's logits u, targeting p(x(u)) |dx/du|; the step size
    falls geometrically from 1e-2 to 1e-5 per unit of log-density gradient, then a MAP polish of
    a tenth of the steps settles the last noise."""
    u = _logits(x01, mask, gen)
    hole = mask.expand_as(x01).float()
    walk = max(1, steps - steps // 10)
    for t in range(walk):
        eta = 1e-2 * (1e-3 ** (t / max(1, walk - 1)))
        u = u.detach().requires_grad_(True)
        s = torch.sigmoid(u)
        log_target = _flow_density(flow, x01, mask, u) + (torch.log(s * (1 - s) + 1e-12) * hole).flatten(1).sum(1)
        (g,) = torch.autograd.grad(log_target.sum(), u)
        noise = torch.randn(u.shape, generator=gen, device=u.device)
        u = u + (0.5 * eta * g + math.sqrt(eta) * noise) * hole
    return _flow_map(flow, x01, mask, steps // 10, gen, label, u=u) if steps // 10 else torch.sigmoid(u)
