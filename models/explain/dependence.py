"""Global explanations: partial dependence (PDP) and individual conditional expectation (ICE)
curves, and latent traversals. Captum has neither; they are a grid and a loop.

    ice(f, x, feature, grid)     -> (N, G): f of each row with one feature set to each grid value
    pdp = ice(...).mean(0)       -> (G,)

What the curves are about, per family:
    vae   a latent dimension of each image's posterior mean -> the judge's belief in a class
          for the decode
    gan   a latent dimension of drawn latents -> the judge's belief in the conditioning class
          (or the discriminator's, without a judge)
    ar    one lag's value -> the one-step forecast (a straight line of slope the lag's coefficient)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from genray.models.base import draw_normal, one_hot, seeded
from genray.models.errors import OptionError

LATENT_RANGE = 3.0  # prior standard deviations either side of the centre
MAX_GRID = 64


@dataclass
class Curves:
    feature: str  # e.g. "latent 3", "lag 1"
    grid: Tensor  # (G,)
    ice: Tensor  # (N, G)
    readout: str  # what the curves read

    @property
    def pdp(self) -> Tensor:
        return self.ice.mean(0)

    def to_json(self) -> dict:
        return {"feature": self.feature, "grid": self.grid.tolist(), "ice": self.ice.tolist(),
                "pdp": self.pdp.tolist(), "readout": self.readout}


def ice(f, x: Tensor, feature: int, grid: Tensor) -> Tensor:
    """f (M, F) -> (M,) evaluated on every row of x (N, F) with column `feature` set to each grid value: (N, G)."""
    N, G = len(x), len(grid)
    xs = x.repeat(G, 1)  # (G * N, F), grid-major
    xs[:, feature] = grid.to(x.dtype).repeat_interleave(N)
    with torch.no_grad():
        return f(xs).view(G, N).T.cpu()


def check_grid(points: int) -> int:
    if isinstance(points, bool) or not isinstance(points, int) or not 2 <= points <= MAX_GRID:
        raise OptionError(f"grid must be an integer in [2, {MAX_GRID}], got {points!r}", "grid")
    return points


def _latent_dim(model, feature: int) -> int:
    if isinstance(feature, bool) or not isinstance(feature, int) or not 0 <= feature < model.latent_dim:
        raise OptionError(f"feature must be a latent dimension in [0, {model.latent_dim - 1}], got {feature!r}",
                          "feature")
    return feature


def latents(model, images: Tensor | None, n: int, label, seed: int) -> tuple[Tensor, Tensor | None]:
    """Latent rows (N, D) and their classes (N,) (None when unconditional): a VAE's posterior
    means of `images` under their most likely class (or `label`); for a GAN, n draws from the
    prior with class `label` (drawn per row when None)."""
    from genray.models.base import sample_labels

    if model.family == "vae" and images is not None:
        x = images.float().to(model.device)
        with torch.no_grad():
            if model.num_classes:
                y = model.class_log_likelihoods(x).argmax(1) if label is None else \
                    torch.full((len(x),), int(label), device=model.device)
            else:
                y = None
            mu, _ = model._encode(model._signed(x), one_hot(y, model.num_classes, len(x), model.device))
        return mu, y
    gens = [seeded(seed + i) for i in range(n)]
    z = draw_normal([model.latent_dim], gens, model.device)
    y = sample_labels(label, n, model.num_classes, gens)
    if y is not None:
        y = y.to(model.device)
        if model.family == "vae":
            z = z + model._prior_mean(y, n)
    return z, y


def decode(model, z: Tensor, y: Tensor | None) -> Tensor:
    """Latents (M, D) and classes (M,) -> images (M, C, H, W) in [0, 1]."""
    c = one_hot(y, model.num_classes, len(z), z.device)
    with torch.no_grad():
        if model.family == "vae":
            return ((model.decode(z, c)[0] + 1) / 2).clamp(0, 1)
        return ((model.generate_images(z, c) + 1) / 2).clamp(0, 1)


def latent_curves(model, z: Tensor, y: Tensor | None, feature: int, points: int, judge=None,
                  target: int | None = None) -> Curves:
    """ICE curves of one latent dimension: the judge's softmax belief in class `target` (default:
    each row's own class) for the decodes; without a judge, a GAN's discriminator probability."""
    feature, points = _latent_dim(model, feature), check_grid(points)
    centre = 0.0 if y is None or model.family == "gan" else float(z[:, feature].mean())
    grid = torch.linspace(centre - LATENT_RANGE, centre + LATENT_RANGE, points)
    N = len(z)
    if judge is None and model.family != "gan":
        raise OptionError("curves of a VAE's latent read a classifier's belief: name one", "classifier")
    if target is not None and not 0 <= int(target) < (judge.num_classes if judge is not None else 1):
        raise OptionError("target must be a class of the classifier", "target")

    def belief(zs: Tensor) -> Tensor:
        reps = len(zs) // N
        ys = None if y is None else y.repeat(reps)
        images = decode(model, zs, ys)
        if judge is None:  # the discriminator's own belief that the decode is real
            return torch.sigmoid(model.critic(images * 2 - 1, one_hot(ys, model.num_classes, len(zs), zs.device)))
        cls = torch.full((len(zs),), int(target), device=zs.device) if target is not None else ys
        if cls is None:
            raise OptionError("an unconditional model's curves need a target class", "target")
        return judge(images.to(judge.device)).softmax(1).gather(1, cls.to(judge.device)[:, None]).squeeze(1)
    readout = ("P(class %s)" % (target if target is not None else "of the row")) if judge is not None \
        else "P(real) by the discriminator"
    return Curves(feature=f"latent {feature}", grid=grid, ice=ice(belief, z, feature, grid), readout=readout)


def lag_curves(model, series, feature: int, points: int) -> Curves:
    """ICE curves of one lag (1 = the newest value) of an AR model's forecast, over the range of
    the rows' values."""
    from genray.models.explain.targets import ar as ar_target

    points = check_grid(points)
    p = model.max_order
    if isinstance(feature, bool) or not isinstance(feature, int) or not 1 <= feature <= p:
        raise OptionError(f"feature must be a lag in [1, {p}], got {feature!r}", "feature")
    e = ar_target(model, series)
    lags = e.inputs  # (N, p)
    lo, hi = float(lags.min()), float(lags.max())
    grid = torch.linspace(lo, hi if hi > lo else lo + 1.0, points, dtype=torch.float64)
    return Curves(feature=f"lag {feature}", grid=grid, ice=ice(e.forward, lags, feature - 1, grid),
                  readout="one-step forecast")


def traversal(model, z: Tensor, y: Tensor | None, dims: list[int], points: int) -> Tensor:
    """Decodes as each latent dimension in `dims` moves across LATENT_RANGE around the first
    row's latent: (len(dims), points, C, H, W)."""
    points = check_grid(points)
    dims = [_latent_dim(model, d) for d in dims]
    base = z[:1].repeat(points, 1)
    rows = []
    for d in dims:
        zs = base.clone()
        zs[:, d] = z[0, d] + torch.linspace(-LATENT_RANGE, LATENT_RANGE, points, device=z.device)
        rows.append(decode(model, zs, None if y is None else y[:1].repeat(points)).cpu())
    return torch.stack(rows)
