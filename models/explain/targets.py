"""What is explained, per family: a differentiable function of one input tensor, in the form
Captum's attribution methods take (`forward(inputs) -> (N,)` scalars, or `(N, K)` with a target).

    classifier   the requested (or predicted) class's logit, over pixels in [0, 1]
    transformer  the log-probability of the next symbol (or of a continuation), over the prompt's
    rnn          symbol embeddings (what Captum's layer methods on the embedding table attribute to),
                 summed per symbol
    vae          the ELBO (z at the posterior mean) under the image's class, over pixels
    gan          the discriminator's logit (real vs fake), over pixels
    flow         the image's bits (-log2 p(x), exact up to the bin-centre dequantization), over pixels
    ar           the one-step forecast, over the last max_order values of the series

Markov chains are explained exactly, without Captum (methods.markov_contributions)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from genray.models.errors import OptionError

BASELINES = ("zero", "blur")


@dataclass
class Explainable:
    inputs: Tensor  # (B, *F): images (B, C, H, W), embeddings (B, T, C) or lags (B, p)
    forward: Callable[..., Tensor]  # (inputs (N, *F), *args) -> (N,) or (N, K) with `target`
    baseline: Tensor  # (B, *F): "absence" of every feature
    units: Tensor  # (*F) long: the unit (pixel, symbol, lag) of each element, for deletion curves
    groups: Tensor  # (*F) long: coarser features for the sampling methods (patches; symbols; lags)
    target: Tensor | None = None  # (B,) class or symbol index into forward's last dimension
    args: tuple = ()  # per-row tensors (B, ...) forward takes after the inputs (Captum's additional_forward_args)
    to_output: Callable[[Tensor], Tensor] = lambda a: a  # attributions (B, *F) -> the caller's shape
    described: list[dict] = field(default_factory=list)  # per row: what was explained
    symbols: list[list[str]] | None = None  # sequence rows: the prompt's symbols
    kind: str = "image"  # "image" | "sequence" | "series"
    probability: bool = False  # faithfulness curves read softmax(forward)[target] (a classifier's belief)

    def score(self, x: Tensor, rows: Tensor | None = None, readout: bool = False) -> Tensor:
        """The explained scalar (N,) for inputs x (N, *F) of rows `rows` (N,) (default: all B in
        order); with `readout`, what faithfulness curves read (a probability, for a classifier)."""
        rows = torch.arange(len(self.inputs)) if rows is None else rows
        out = self.forward(x, *(a[rows.to(a.device)] for a in self.args))
        if self.target is None:
            return out
        if readout and self.probability:
            out = out.softmax(1)
        return out.gather(1, self.target[rows.to(self.target.device)].to(out.device)[:, None]).squeeze(1)

    def row(self, i: int) -> dict:
        """Captum's arguments for row i alone."""
        return {"target": None if self.target is None else self.target[i:i + 1],
                "additional_forward_args": tuple(a[i:i + 1] for a in self.args) or None}

    @property
    def n_units(self) -> int:
        return int(self.units.max()) + 1


def _patches(H: int, W: int, patch: int) -> Tensor:
    rows, cols = torch.arange(H) // patch, torch.arange(W) // patch
    return rows[:, None] * ((W + patch - 1) // patch) + cols[None, :]  # (H, W)


def default_patch(shape: list[int]) -> int:
    """Square patches for the sampling methods: about 7 x 7 of them (4 pixels at 28 x 28, 1 at 8 x 8)."""
    return max(1, min(shape[1:]) // 7)


def blur(x: Tensor, sigma: float = 2.0) -> Tensor:
    """Gaussian blur of (B, C, H, W), separable, reflect-padded: a baseline that keeps the colour
    mass and removes the edges."""
    r = max(1, int(3 * sigma))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype) ** 2 / (2 * sigma**2))
    k = (k / k.sum()).to(x.device)
    C = x.shape[1]
    pad = min(r, x.shape[2] - 1, x.shape[3] - 1)
    k = k[r - pad:r + pad + 1]
    y = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def image_baseline(x: Tensor, baseline) -> Tensor:
    if baseline is None or baseline == "zero":
        return torch.zeros_like(x)
    if baseline == "blur":
        return blur(x)
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool) and 0 <= baseline <= 1:
        return torch.full_like(x, float(baseline))
    raise OptionError(f"baseline for images must be one of {list(BASELINES)} or a grey level in [0, 1], "
                      f"got {baseline!r}", "baseline")


def _image(model, x: Tensor, forward, baseline, patch: int | None, target=None, described=None,
           args: tuple = ()) -> Explainable:
    x = x.float().to(model.device)
    C, H, W = x.shape[1:]
    patch = patch or default_patch([C, H, W])
    if not 1 <= patch <= min(H, W):
        raise OptionError(f"patch must be in [1, {min(H, W)}], got {patch}", "patch")
    pixels = torch.arange(H * W).view(1, H, W).expand(C, H, W)

    def in_range(images: Tensor, *args) -> Tensor:  # noise (SmoothGrad, GradientSHAP) stays in [0, 1]
        return forward(images.clamp(0, 1), *args)
    return Explainable(inputs=x, forward=in_range, baseline=image_baseline(x, baseline), units=pixels,
                       groups=_patches(H, W, patch).view(1, H, W).expand(C, H, W).to(x.device), target=target,
                       args=args,
                       described=described or [{} for _ in range(len(x))])


def _check_images(model, x: Tensor) -> None:
    if x.dim() != 4 or list(x.shape[1:]) != list(model.shape):
        raise OptionError(f"inputs must be images of shape (B, {', '.join(map(str, model.shape))}), "
                          f"got {tuple(x.shape)}", "inputs")


def _labels(target, n: int, num_classes: int, default: Tensor | None, what: str) -> Tensor:
    if target is None:
        if default is None:
            raise OptionError(f"this model is conditioned on a class: give the {what}'s class as target", "target")
        return default
    t = torch.as_tensor(target).long().flatten()
    t = t.expand(n) if t.numel() == 1 else t
    if len(t) != n or bool(((t < 0) | (t >= num_classes)).any()):
        raise OptionError(f"target must be one class in [0, {num_classes - 1}] or one per input ({n})", "target")
    return t.clone()


def classifier(model, x: Tensor, target=None, baseline=None, patch=None) -> Explainable:
    _check_images(model, x)
    with torch.no_grad():
        pred = model(x.float().to(model.device)).argmax(1).cpu()
    t = _labels(target, len(x), model.num_classes, pred, "image")
    e = _image(model, x, model, baseline, patch, target=t.to(model.device),
               described=[{"class": int(c), "predicted": int(p)} for c, p in zip(t, pred)])
    e.probability = True
    return e


def vae(model, x: Tensor, target=None, baseline=None, patch=None) -> Explainable:
    _check_images(model, x)
    labels = None
    if model.num_classes:
        with torch.no_grad():
            best = model.class_log_likelihoods(x.float().to(model.device)).argmax(1).cpu()
        labels = _labels(target, len(x), model.num_classes, best, "image").to(model.device)
    elif target is not None:
        raise OptionError("this VAE is unconditional: it takes no target class", "target")

    # Each pixel keeps the bin of its level in the input (an open tail at 0 and 255): the ELBO at
    # the input is exact, and continuous along a path from the baseline (IG's completeness holds).
    signed = model._signed(x.float())
    low, high = signed < -0.999, signed > 0.999

    def elbo(images: Tensor, low: Tensor, high: Tensor, y: Tensor | None = None) -> Tensor:  # (N,) nats
        return model._mean_elbo(model._signed(images), y, (low, high))
    described = [{"elbo_class": None if labels is None else int(labels[i])} for i in range(len(x))]
    return _image(model, x, elbo, baseline, patch, described=described,
                  args=(low, high) if labels is None else (low, high, labels))


def gan(model, x: Tensor, target=None, baseline=None, patch=None) -> Explainable:
    from genray.models.base import one_hot

    _check_images(model, x)
    labels = _labels(target, len(x), model.num_classes, None, "image").to(model.device) if model.num_classes else None
    if not model.num_classes and target is not None:
        raise OptionError("this GAN is unconditional: it takes no target class", "target")

    def realness(images: Tensor, y: Tensor | None = None) -> Tensor:  # (N,) the discriminator's logit
        return model.critic(images * 2 - 1, one_hot(y, model.num_classes, len(images), images.device))
    described = [{"class": None if labels is None else int(labels[i])} for i in range(len(x))]
    return _image(model, x, realness, baseline, patch, described=described, args=() if labels is None else (labels,))


def flow(model, x: Tensor, target=None, baseline=None, patch=None) -> Explainable:
    from genray.models.robustness.purify import flow_log_density

    _check_images(model, x)
    if target is not None:
        raise OptionError("a flow's explanation is its image's bits: it takes no target", "target")
    return _image(model, x, lambda images: -flow_log_density(model, images) / math.log(2), baseline, patch,
                  described=[{"bits": "-log2 p(x)"} for _ in range(len(x))])


def _prompt_rows(model, prompt) -> list:
    """One prompt (a text, or a list of events) or a list of them -> a list of rows."""
    one = isinstance(prompt, str) or (model.modality == "music" and isinstance(prompt, list)
                                      and all(isinstance(e, str) for e in prompt))
    rows = [prompt] if one else prompt
    if not isinstance(rows, list) or not rows:
        raise OptionError("prompt must be a text (or a list of events), or a list of them", "prompt")
    return rows


def _symbols(model, x, field: str) -> Tensor:
    bad = model.vocab.unknown(x) if x else []
    ids = model.tokens(x)[0] if x and not bad else torch.zeros(0, dtype=torch.long)
    if bad or not ids.numel():
        raise OptionError(f"{field} is empty or has symbols not in the model's vocabulary: {bad[:10]}", field)
    return ids.to(model.device)


def _name(model, i) -> str:
    """The symbol of id i: a character, or an event."""
    out = model.vocab.decode([int(i)])
    return out if isinstance(out, str) else out[0]


def sequence(model, prompt, target=None, baseline=None, patch=None) -> Explainable:
    """Prompts of equal length, and the next symbol (target None: the most likely one; one symbol)
    or a continuation (a longer text, or a list of events) whose log-probability is explained."""
    if patch is not None:
        raise OptionError("patch applies to images only", "patch")
    ids = [_symbols(model, p, "prompt") for p in _prompt_rows(model, prompt)]
    if any(len(i) != len(ids[0]) for i in ids):
        raise OptionError("prompts must be of equal length", "prompt")
    idx = torch.stack(ids)  # (B, T)
    B, T = idx.shape
    table = model.token_embedding()
    with torch.no_grad():
        emb = table(idx)  # (B, T, C)
        last = torch.log_softmax(model.logits_from_embeddings(emb)[:, -1], -1)  # (B, V)
    one = target is None or len(model.vocab.split(target) if model.modality == "music" else target) == 1
    cont = None if one else _symbols(model, target, "target")  # (S,)
    limit = getattr(model, "block_size", None)
    if limit and T + (0 if cont is None else len(cont) - 1) > limit:
        raise OptionError(f"prompt and continuation exceed the model's context of {limit} symbols", "prompt")
    if cont is None:
        t = last.argmax(1) if target is None else _symbols(model, target, "target").expand(B)
        forward = lambda e: torch.log_softmax(model.logits_from_embeddings(e)[:, -1], -1)  # noqa: E731
        described = [{"next": _name(model, s), "log_prob": float(last[i, s])} for i, s in enumerate(t)]
    else:
        t = None
        fixed = table(cont[:-1]).detach()  # (S - 1, C): the continuation's own symbols, held fixed

        def forward(e: Tensor) -> Tensor:  # log P(continuation | prompt) (N,)
            full = torch.cat([e, fixed.expand(len(e), -1, -1)], 1)
            lp = torch.log_softmax(model.logits_from_embeddings(full)[:, T - 1:], -1)  # (N, S, V)
            return lp.gather(2, cont.expand(len(e), -1)[..., None]).squeeze(2).sum(1)
        described = [{"continuation": " ".join(map(str, (_name(model, s) for s in cont)))
                      if model.modality == "music" else model.vocab.decode(cont.tolist())} for _ in range(B)]
    if baseline in (None, "zero"):
        base = torch.zeros_like(emb)
    else:
        sym = _symbols(model, baseline, "baseline") if isinstance(baseline, str) else None
        if sym is None or len(sym) != 1:
            raise OptionError("baseline for a sequence model is 'zero' (zero embeddings) or one symbol of its "
                              "vocabulary, whose embedding fills every position", "baseline")
        base = table(sym).detach().expand(B, T, -1).clone()
    positions = torch.arange(T)[:, None].expand(T, emb.shape[2])
    return Explainable(inputs=emb, forward=forward, baseline=base, units=positions,
                       groups=positions.to(emb.device), target=t,
                       to_output=lambda a: a.sum(-1), described=described, kind="sequence",
                       symbols=[[_name(model, s) for s in row] for row in idx])


def ar(model, series, target=None, baseline=None, patch=None) -> Explainable:
    """The forecast of the value after each row's series from its last max_order values."""
    if target is not None or patch is not None:
        raise OptionError("an AR forecast takes no target or patch", "target" if target is not None else "patch")
    x = torch.as_tensor(series, dtype=torch.float64)
    x = x[None] if x.dim() == 1 else x
    p = model.max_order
    if x.dim() != 2 or x.shape[1] < int(model.order) or not bool(torch.isfinite(x).all()):
        raise OptionError(f"series must hold at least {int(model.order)} finite values (the model's order)", "series")
    L = x.shape[1]
    lags = torch.zeros(len(x), p, dtype=torch.float64)  # (B, p), lag 1 (the newest value) first
    n = min(p, L)
    lags[:, :n] = x[:, -n:].flip(1)
    if baseline is not None and not (isinstance(baseline, (int, float)) and not isinstance(baseline, bool)):
        raise OptionError("baseline for a series is a number (the value every lag takes)", "baseline")
    coef = model.coef.cpu()

    def forecast(lag_values: Tensor) -> Tensor:  # (N,)
        return coef[0] + lag_values @ coef[1:]

    def to_series(a: Tensor) -> Tensor:  # lags (B, p) -> (B, L), zero where no lag reaches
        out = torch.zeros(len(a), L, dtype=a.dtype)
        out[:, L - n:] = a[:, :n].flip(1)
        return out
    lag_ids = torch.arange(p)
    with torch.no_grad():
        pred = forecast(lags)
    return Explainable(inputs=lags, forward=forecast, baseline=torch.full_like(lags, float(baseline or 0.0)),
                       units=lag_ids, groups=lag_ids, to_output=to_series, kind="series",
                       described=[{"forecast": float(v)} for v in pred])


BUILDERS = {"classifier": classifier, "vae": vae, "gan": gan, "flow": flow, "transformer": sequence,
            "rnn": sequence, "ar": ar}


def explainable(model, inputs, target=None, baseline=None, patch=None) -> Explainable:
    family = model.family
    if family not in BUILDERS:
        raise OptionError(f"{family} models are explained by method 'exact' only", "method")
    return BUILDERS[family](model, inputs, target=target, baseline=baseline, patch=patch)
