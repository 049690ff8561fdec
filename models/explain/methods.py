"""One call for every attribution method, in the style of Captum's `attribute`:

    explain(model, inputs, *, method, target=None, baseline=None, **method_options) -> Explanation

`inputs` are what the family takes (images (B, C, H, W) in [0, 1]; a prompt or prompts; a
series); targets.py says what each family's explanation is about. The algorithms are Captum's:

    saliency     |gradient|                                  Saliency
    ig           Integrated Gradients, with its completeness delta  IntegratedGradients
    smoothgrad   SmoothGrad over gradient x input            NoiseTunnel(InputXGradient)
    gradshap     GradientSHAP from the baseline, noised      GradientShap
    occlusion    sliding-window occlusion (patches; symbols) Occlusion
    kernelshap   KernelSHAP over patches, symbols or lags    KernelShap
    lime         LIME over the same features (a ridge surrogate, as the original LIME)  Lime
    exact        Markov chains: each context position's exact share of log p(next | context)

Gradient x input is the SmoothGrad variant that Smilkov et al. (2017) also report: on images
whose background is the baseline, the bare gradient ranks background pixels whose removal
changes nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from genray.models.errors import OptionError
from genray.models.explain.targets import Explainable, _name, _prompt_rows, _symbols, explainable

GRADIENT = ("saliency", "ig", "smoothgrad", "gradshap")
PERTURBATION = ("occlusion", "kernelshap", "lime")
METHODS = (*GRADIENT, *PERTURBATION)
LIMITS = {"n_steps": (2, 512), "n_samples": (1, 2000)}
DEFAULTS = {"ig": {"n_steps": 64}, "smoothgrad": {"n_samples": 32}, "gradshap": {"n_samples": 64},
            "kernelshap": {"n_samples": 256}, "lime": {"n_samples": 256}}
NOISE = 0.1  # SmoothGrad's and GradientSHAP's noise, as a fraction of the input's range


@dataclass
class Explanation:
    method: str
    attributions: Tensor  # shaped like the caller's input: (B, C, H, W), (B, T) symbols, (B, L) series
    scores: Tensor  # (B,) the explained quantity at the input
    baseline_scores: Tensor | None  # (B,) at the baseline
    described: list[dict]  # per row: what was explained
    diagnostics: dict = field(default_factory=dict)  # e.g. IG's completeness delta
    symbols: list[list[str]] | None = None
    explainable: Explainable | None = None  # kept for faithfulness evaluation and pictures
    raw: Tensor | None = None  # attributions on explainable.inputs (B, *F)


def check_option(name: str, value) -> int:
    lo, hi = LIMITS[name]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise OptionError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}", name)
    return value


def attribute(e: Explainable, method: str, n_steps: int | None = None, n_samples: int | None = None,
              seed: int = 0) -> tuple[Tensor, dict]:
    """Captum's attribution of e.forward at e.inputs: (attributions (B, *F), diagnostics)."""
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import (
        GradientShap,
        InputXGradient,
        IntegratedGradients,
        KernelShap,
        Lime,
        NoiseTunnel,
        Occlusion,
        Saliency,
    )

    if method not in METHODS:
        raise OptionError(f"unknown method {method!r}; known: {list(METHODS)}", "method")
    d = DEFAULTS.get(method, {})
    if n_steps is not None and "n_steps" not in d:
        raise OptionError(f"n_steps applies to ig only, not {method}", "n_steps")
    if n_samples is not None and "n_samples" not in d:
        raise OptionError(f"n_samples applies to {[m for m in DEFAULTS if 'n_samples' in DEFAULTS[m]]}, not {method}",
                          "n_samples")
    n_steps = check_option("n_steps", n_steps if n_steps is not None else d.get("n_steps", 2))
    n_samples = check_option("n_samples", n_samples if n_samples is not None else d.get("n_samples", 1))
    torch.manual_seed(seed)  # the sampling methods draw from torch's global generator
    x, base, f = e.inputs.detach(), e.baseline.detach(), e.forward
    every = {"target": e.target, "additional_forward_args": e.args or None}
    scale = float((x.amax() - x.amin()).clamp(min=1e-6))
    diag: dict = {}
    if method == "saliency":
        a = Saliency(f).attribute(x, abs=True, **every)
    elif method == "ig":
        a, delta = IntegratedGradients(f).attribute(x, baselines=base, n_steps=n_steps, return_convergence_delta=True,
                                                    internal_batch_size=max(256, len(x)), **every)
        diag = {"n_steps": n_steps, "completeness_delta": delta.abs().tolist()}
    elif method == "smoothgrad":
        a = NoiseTunnel(InputXGradient(f)).attribute(x, nt_type="smoothgrad", nt_samples=n_samples,
                                                     nt_samples_batch_size=32, stdevs=NOISE * scale, **every)
        diag = {"n_samples": n_samples, "stdev": NOISE * scale}
    elif method == "occlusion":
        window, strides = _window(e)
        a = Occlusion(f).attribute(x, sliding_window_shapes=window, strides=strides, baselines=base, **every)
    else:  # one input at a time: GradientSHAP draws from one row's baseline; the others fit one surrogate each
        rows = []
        for i in range(len(x)):
            if method == "gradshap":
                rows.append(GradientShap(f).attribute(x[i:i + 1], baselines=base[i:i + 1], n_samples=n_samples,
                                                      stdevs=NOISE * scale, **e.row(i)))
            else:
                cls = KernelShap(f) if method == "kernelshap" else Lime(f, SkLearnRidge(alpha=1.0))
                rows.append(cls.attribute(x[i:i + 1], baselines=base[i:i + 1], feature_mask=e.groups[None],
                                             n_samples=n_samples, perturbations_per_eval=64, **e.row(i)))
        a = torch.cat(rows)
        diag = {"n_samples": n_samples}
        diag.update({"stdev": NOISE * scale} if method == "gradshap" else {"features": int(e.groups.max()) + 1})
    return a.detach(), diag


def _window(e: Explainable) -> tuple[tuple, tuple]:
    """Occlusion's window and stride: a patch of the sampling methods' size over every channel,
    half a patch apart; one symbol's whole embedding; one lag."""
    if e.kind == "image":
        C, H, W = e.inputs.shape[1:]
        patch = int((e.groups[0] == 0).sum(0).max()) if H > 1 else 1
        return (C, patch, patch), (C, max(1, patch // 2), max(1, patch // 2))
    if e.kind == "sequence":
        return (1, e.inputs.shape[2]), (1, e.inputs.shape[2])
    return (1,), (1,)


def explain(model, inputs, *, method: str, target=None, baseline=None, n_steps: int | None = None,
            n_samples: int | None = None, patch: int | None = None, seed: int = 0) -> Explanation:
    """Attributions of `model`'s explained quantity for `inputs` (see targets.py), shaped like them."""
    if model.family == "markov":
        if method != "exact":
            raise OptionError(f"Markov chains are explained by method 'exact', not {method!r}", "method")
        if baseline is not None or patch is not None or n_steps is not None or n_samples is not None:
            raise OptionError("method 'exact' takes no baseline, patch, n_steps or n_samples", "baseline")
        return markov_contributions(model, inputs, target)
    if method == "exact":
        raise OptionError("method 'exact' applies to Markov chains only", "method")
    was = model.training
    model.eval()  # dropout off: one fixed function while explaining
    try:
        e = explainable(model, inputs, target=target, baseline=baseline, patch=patch)
        raw, diag = attribute(e, method, n_steps=n_steps, n_samples=n_samples, seed=seed)
        with torch.no_grad():
            scores, base_scores = e.score(e.inputs), e.score(e.baseline)
    finally:
        model.train(was)
    if method == "ig":  # relative to what there is to explain: |f(x) - f(baseline)|
        gap = (scores - base_scores).abs().clamp(min=1e-12)
        diag["relative_delta"] = (torch.tensor(diag["completeness_delta"], dtype=gap.dtype) / gap.cpu()).tolist()
    return Explanation(method=method, attributions=e.to_output(raw).cpu(), scores=scores.detach().cpu(),
                       baseline_scores=base_scores.detach().cpu(), described=e.described, diagnostics=diag,
                       symbols=e.symbols, explainable=e, raw=raw)


def markov_contributions(model, prompt, target=None) -> Explanation:
    """Each context position's exact share of log p(next | context): the chain backs off from
    `order` symbols to none, so position j (j symbols back) contributes
    log p(next | last j symbols) - log p(next | last j - 1), and the shares sum exactly to
    log p(next | context) - log p(next | no context). Positions beyond the order get 0."""
    rows = [_symbols(model, p, "prompt") for p in _prompt_rows(model, prompt)]
    if any(len(r) != len(rows[0]) for r in rows):
        raise OptionError("prompts must be of equal length", "prompt")
    idx = torch.stack(rows)  # (B, T)
    B, T, k = *idx.shape, model.order
    width = max(k, 1)
    levels = []  # log p(. | last j symbols) for j = 0..order: (B, V) each
    for j in range(k + 1):
        hist = torch.full((B, width), -1, dtype=torch.long, device=idx.device)
        if j:
            tail = idx[:, -min(j, T):]
            hist[:, width - tail.shape[1]:] = tail
        levels.append(model.next_probs(hist).log())
    full = levels[-1]
    t = full.argmax(1) if target is None else _symbols(model, target, "target").expand(B)
    if t.numel() != B:
        raise OptionError("target is one symbol, the next one", "target")
    lp = torch.stack([lv.gather(1, t[:, None]).squeeze(1) for lv in levels], 1)  # (B, order + 1)
    attributions = torch.zeros(B, T, dtype=torch.float64)
    for j in range(1, min(k, T) + 1):
        attributions[:, T - j] = lp[:, j] - lp[:, j - 1]
    return Explanation(method="exact", attributions=attributions, scores=lp[:, -1], baseline_scores=lp[:, 0],
                       described=[{"next": _name(model, s), "log_prob": float(lp[i, -1])} for i, s in enumerate(t)],
                       diagnostics={"order": k, "completeness_delta": [0.0] * B},
                       symbols=[[_name(model, s) for s in row] for row in idx])
