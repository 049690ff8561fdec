"""How faithful an explanation is to the model.

Deletion and insertion curves (Petsiuk et al., RISE, 2018): units (pixels, symbols, lags) are
set to the baseline in the order of their attribution, most attributed first (deletion), or
restored from the baseline in that order (insertion), and the explained quantity is read after
each step. A curve is normalised to run from the input's score to the baseline's, (s - s_base) /
(s_input - s_base), and clipped to [0, 1] (a partly deleted input can score below the baseline,
or a partly restored one above the input), so that areas compare across targets and units:
deletion starts at 1, and a faithful ranking makes it fall fast (a small area); insertion starts
at 0 and should rise fast.
Each area is reported against the same curve for a random ranking (the mean of a few) and, for
images, an edge detector's ranking (Sobel magnitude of the input): a ratio below 1 for deletion
and above 1 for insertion beats them.

Captum's infidelity (with normalised attributions) and max-sensitivity complete the picture, and
IG reports its completeness delta itself.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from genray.models.explain.methods import Explanation, attribute
from genray.models.explain.targets import Explainable

STEPS = 20  # points on each curve after the first
RANDOM_RANKINGS = 3
MIN_AREA = 0.05


def unit_scores(e: Explainable, raw: Tensor) -> Tensor:
    """Attributions (B, *F) summed within each unit -> (B, U)."""
    flat = raw.reshape(len(raw), -1)
    units = e.units.reshape(-1).to(flat.device)
    return torch.zeros(len(raw), e.n_units, dtype=flat.dtype, device=flat.device).index_add_(1, units, flat)


def curve(e: Explainable, ranking: Tensor, insertion: bool) -> Tensor:
    """Normalised scores (B, STEPS + 1) as the ranked units (B, U) are deleted or inserted."""
    B, U = ranking.shape
    counts = torch.linspace(0, U, min(STEPS, U) + 1).round().long()  # units changed at each point
    rank_of = torch.empty_like(ranking)
    rank_of.scatter_(1, ranking, torch.arange(U, device=ranking.device).expand(B, U))  # (B, U) position in ranking
    elem_rank = rank_of[:, e.units.reshape(-1).to(ranking.device)].view(B, *e.inputs.shape[1:])  # (B, *F)
    x, base = e.inputs.detach(), e.baseline.detach()
    points = []
    with torch.no_grad():
        for k in counts:
            changed = elem_rank < k
            start, end = (base, x) if insertion else (x, base)
            points.append(torch.where(changed, end, start))
        xs = torch.cat(points)  # (P * B, *F), point-major
        rows = torch.arange(B).repeat(len(counts))
        s = torch.cat([e.score(xs[i:i + 512], rows[i:i + 512], readout=True)
                       for i in range(0, len(xs), 512)]).view(len(counts), B)
        s_in, s_base = e.score(x, readout=True), e.score(base, readout=True)
    gap = s_in - s_base
    gap = torch.where(gap.abs() < 1e-12, torch.full_like(gap, 1e-12), gap)
    return ((s - s_base) / gap).clamp(0, 1).T.cpu()  # (B, P)


def area(c: Tensor) -> Tensor:
    """Trapezoidal area (B,) under curves (B, P) over the fraction of units, 0 to 1."""
    return torch.trapezoid(c, dx=1.0 / (c.shape[1] - 1), dim=1)


def edges(x: Tensor) -> Tensor:
    """Sobel gradient magnitude of images (B, C, H, W), summed over channels, per element (B, C, H, W)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device)
    k = torch.stack([kx, kx.T])[:, None]  # (2, 1, 3, 3)
    C = x.shape[1]
    g = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate").reshape(-1, 1, *[s + 2 for s in x.shape[2:]]), k)
    mag = g.pow(2).sum(1).sqrt().view(len(x), C, *x.shape[2:])
    return mag.sum(1, keepdim=True).expand_as(x)


def ratio(a: Tensor, reference: Tensor) -> list:
    """a / reference per row; None where the reference area is too small to divide by (a curve
    that barely leaves zero, or crosses it)."""
    return [float(x / r) if r > MIN_AREA else None for x, r in zip(a, reference)]


def _rank(scores: Tensor) -> Tensor:
    return scores.argsort(dim=1, descending=True)


def deletion_insertion(e: Explainable, raw: Tensor, seed: int = 0) -> dict:
    """Per-row areas of both curves for the explanation, a random ranking and (images) an edge
    ranking, their ratios, and the curves themselves."""
    ranking = _rank(unit_scores(e, raw))
    g = torch.Generator().manual_seed(seed)
    B, U = ranking.shape
    randoms = [torch.stack([torch.randperm(U, generator=g) for _ in range(B)]).to(ranking.device)
               for _ in range(RANDOM_RANKINGS)]
    out: dict = {}
    for name, insertion in (("deletion", False), ("insertion", True)):
        c = curve(e, ranking, insertion)
        a = area(c)
        a_rand = torch.stack([area(curve(e, r, insertion)) for r in randoms]).mean(0)
        out[name] = {"auc": a.tolist(), "random_auc": a_rand.tolist(), "ratio_to_random": ratio(a, a_rand),
                     "curve": c.tolist()}
        if e.kind == "image":
            a_edge = area(curve(e, _rank(unit_scores(e, edges(e.inputs.detach()))), insertion))
            out[name].update({"edge_auc": a_edge.tolist(), "ratio_to_edge": ratio(a, a_edge)})
    return out


def captum_metrics(e: Explainable, raw: Tensor, method: str, n_perturb: int = 8, radius: float = 0.02,
                   **options) -> dict:
    """Captum's infidelity (Gaussian perturbations of 0.03 of the input's range, attributions
    normalised) and max-sensitivity (the method re-run within an L-inf ball of `radius` times
    the range), per row."""
    from captum.metrics import infidelity, sensitivity_max

    x = e.inputs.detach()
    scale = float((x.amax() - x.amin()).clamp(min=1e-6))

    def perturb(inputs: Tensor):
        noise = torch.randn_like(inputs) * 0.03 * scale
        return noise, inputs - noise

    infid, sens = [], []
    for i in range(len(x)):
        infid.append(infidelity(e.forward, perturb, x[i:i + 1], raw[i:i + 1], n_perturb_samples=n_perturb,
                                normalize=True, **e.row(i)))

        def explain_row(inputs: Tensor, i=i) -> tuple[Tensor]:  # the perturbed copies of row i (n, *F)
            inputs = inputs[0] if isinstance(inputs, tuple) else inputs
            n = len(inputs)
            grow = lambda t: t[i:i + 1].expand(n, *t.shape[1:])  # noqa: E731
            one = Explainable(**{**e.__dict__, "inputs": inputs, "baseline": grow(e.baseline),
                                 "target": None if e.target is None else grow(e.target),
                                 "args": tuple(grow(a) for a in e.args)})
            return (attribute(one, method, **options)[0],)  # a tuple: Captum iterates over what this returns
        torch.manual_seed(i)
        sens.append(sensitivity_max(explain_row, x[i:i + 1], perturb_radius=radius * scale,
                                    n_perturb_samples=max(2, n_perturb // 2)))
    return {"infidelity": torch.cat(infid).tolist(), "max_sensitivity": torch.cat(sens).tolist()}


def evaluate(ex: Explanation, metrics: bool = True, **options) -> dict:
    """Every faithfulness number for an explanation made by explain() (not method 'exact')."""
    e, raw = ex.explainable, ex.raw
    out = deletion_insertion(e, raw)
    if metrics:
        out.update(captum_metrics(e, raw, ex.method, **options))
    if ex.method == "ig":
        out["completeness_relative_delta"] = ex.diagnostics["relative_delta"]
    return out
