"""Evasion attacks on image classifiers, one call for every method, in the style of the
libraries (ART, torchattacks):

    attack(model, x, y=None, *, method, eps, norm="linf", steps=40, step_size=None,
           targeted=False, target=None, seed=0, restarts=1) -> AttackResult

`x` is (B, C, H, W) in [0, 1]. FGSM, PGD (with restarts), Carlini-Wagner L2 and APGD come from
the Adversarial Robustness Toolbox (ART), the field's maintained library. "autoattack" is
AutoAttack's standard version (Croce & Hein 2020) at its published settings: APGD-CE (100
iterations), APGD-T and FAB-T (100 iterations, each over the 9 most likely other classes) and
Square (5,000 queries, p_init 0.8), from torchattacks' port of the reference code, each run on the
inputs the ones before it left unbroken. APGD starts at a step of 2 eps, as in AutoAttack. `pgd()`
is PGD written for a hot training loop (adversarial training), where ART's numpy round trips
would dominate; a test checks that it and ART's PGD leave robust accuracies within 2 points of
each other.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genray.models.errors import OptionError

METHODS = ("fgsm", "pgd", "cw", "apgd", "square", "autoattack")
AUTOATTACK_PARTS = ("apgd-ce", "apgd-t", "fab-t", "square")
SQUARE_QUERIES_PER_STEP = 50  # Square's queries: 5,000 at AutoAttack's 100 steps
NORMS = {"linf": np.inf, "l2": 2}
EPS_LIMITS = {"linf": 1.0, "l2": 64.0}  # a perturbation in [0, 1]^D: L-inf at most 1


@dataclass
class AttackResult:
    x_adv: torch.Tensor  # (B, C, H, W) in [0, 1]
    labels: torch.Tensor  # (B,) the true labels (or the clean predictions, where none were given)
    clean_pred: torch.Tensor  # (B,)
    adv_pred: torch.Tensor  # (B,)
    success: torch.Tensor  # (B,) bool: misclassified (untargeted) or classified as the target (targeted)
    linf: torch.Tensor  # (B,) perturbation norms
    l2: torch.Tensor
    target: torch.Tensor | None = None
    # For an ensemble (autoattack): robust accuracy after each of its attacks in turn.
    parts: dict[str, float] | None = None

    @property
    def clean_accuracy(self) -> float:
        return float((self.clean_pred == self.labels).float().mean())

    @property
    def robust_accuracy(self) -> float:
        return float((self.adv_pred == self.labels).float().mean())

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean())

    @property
    def robust(self) -> torch.Tensor:
        """(B,) bool: still classified correctly under the attack."""
        return self.adv_pred == self.labels

    def summary(self) -> dict:
        out = {"n": len(self.labels), "clean_accuracy": self.clean_accuracy, "robust_accuracy": self.robust_accuracy,
               "success_rate": self.success_rate, "mean_linf": float(self.linf.mean()),
               "max_linf": float(self.linf.max()), "mean_l2": float(self.l2.mean())}
        if self.parts:
            out["parts"] = dict(self.parts)
        return out


def worst_case(results: list[AttackResult]) -> float:
    """Robust accuracy against the strongest attack per image: correct under every one of them."""
    if not results:
        raise OptionError("worst_case needs at least one attack result", "results")
    return float(torch.stack([r.robust for r in results]).all(0).float().mean())


def check_budget(eps: float, norm: str, steps: int, step_size: float | None = None) -> None:
    """OptionError, naming the field, for a perturbation budget and step schedule no attack on
    images in [0, 1] can run with (every image attack checks these)."""
    if norm not in NORMS:
        raise OptionError(f"norm must be one of {list(NORMS)}, got {norm!r}", "norm")
    if not 0 < eps <= EPS_LIMITS[norm]:
        raise OptionError(f"eps must be in (0, {EPS_LIMITS[norm]:g}] for norm {norm}, got {eps}", "eps")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 1000:
        raise OptionError(f"steps must be an integer in [1, 1000], got {steps!r}", "steps")
    if step_size is not None and not step_size > 0:
        raise OptionError(f"step_size must be positive, got {step_size}", "step_size")


def check(method: str, eps: float, norm: str, steps: int, n_classes: int, targeted: bool, target) -> None:
    """OptionError, naming the field, for settings no attack can run with."""
    if method not in METHODS:
        raise OptionError(f"unknown attack method {method!r}; known: {list(METHODS)}", "method")
    check_budget(eps, norm, steps)
    if method == "cw" and norm != "l2":
        raise OptionError("Carlini-Wagner is an L2 attack: use norm 'l2'", "norm")
    if method in ("autoattack", "square") and targeted:
        raise OptionError(f"{method} is untargeted (AutoAttack aims at every other class itself)", "targeted")
    if targeted and target is None:
        raise OptionError("a targeted attack needs a target class", "target")
    for t in ([] if target is None else np.atleast_1d(target)):
        if not 0 <= int(t) < n_classes:
            raise OptionError(f"target must be in [0, {n_classes - 1}], got {t}", "target")


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch_size].to(_device(model))).argmax(1).cpu()
                          for i in range(0, len(x), batch_size)])


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _art_classifier(model: nn.Module, x: torch.Tensor, n_classes: int):
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                             nb_classes=n_classes, clip_values=(0.0, 1.0),
                             device_type="gpu" if _device(model).type == "cuda" else "cpu")


def _art_attack(method: str, clf, *, eps: float, norm: str, steps: int, step_size: float, targeted: bool,
                restarts: int, batch_size: int) -> list:
    """The ART attacks that run in turn, each on the inputs the ones before it left unbroken."""
    from art.attacks.evasion import (
        AutoProjectedGradientDescent,
        CarliniL2Method,
        FastGradientMethod,
        ProjectedGradientDescent,
    )


    p = NORMS[norm]
    if method == "fgsm":
        return [FastGradientMethod(clf, norm=p, eps=eps, targeted=targeted, batch_size=batch_size)]
    if method == "pgd":
        return [ProjectedGradientDescent(clf, norm=p, eps=eps, eps_step=step_size, max_iter=steps, targeted=targeted,
                                        num_random_init=restarts, batch_size=batch_size, verbose=False)]
    if method == "cw":
        # ART's default 10 binary-search steps over the trade-off constant: with fewer, the constant
        # stays too small to fool about half of the digits at any L2 norm.
        return [CarliniL2Method(clf, targeted=targeted, learning_rate=step_size, max_iter=steps,
                                binary_search_steps=10, batch_size=batch_size, verbose=False)]
    # APGD (Croce & Hein 2020) on the cross-entropy, then on the difference-of-logits ratio, each
    # with restarts. ART's eps_step is the first step, which APGD only ever halves: AutoAttack's 2 eps.
    return [AutoProjectedGradientDescent(clf, norm=p, eps=eps, eps_step=step_size, max_iter=steps, targeted=targeted,
                                         nb_random_init=restarts, batch_size=batch_size, loss_type=loss, verbose=False)
            for loss in ("cross_entropy", "difference_logits_ratio")]


def _torchattacks(method: str, model: nn.Module, *, eps: float, norm: str, steps: int, n_classes: int,
                  seed: int) -> list[tuple[str, object]]:
    """AutoAttack's standard ensemble, or Square alone, as torchattacks objects (name, attack)."""
    import torchattacks as ta

    ta_norm = {"linf": "Linf", "l2": "L2"}[norm]
    square = ("square", ta.Square(model, norm=ta_norm, eps=eps, n_queries=SQUARE_QUERIES_PER_STEP * steps,
                                  n_restarts=1, p_init=0.8, seed=seed))
    if method == "square":
        return [square]
    return [("apgd-ce", ta.APGD(model, norm=ta_norm, eps=eps, steps=steps, n_restarts=1, loss="ce", seed=seed)),
            ("apgd-t", ta.APGDT(model, norm=ta_norm, eps=eps, steps=steps, n_restarts=1, n_classes=n_classes,
                                seed=seed)),
            ("fab-t", ta.FAB(model, norm=ta_norm, eps=eps, steps=steps, n_restarts=1, multi_targeted=True,
                             n_classes=n_classes, seed=seed)),
            square]


def attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None, *, method: str, eps: float,
           norm: str = "linf", steps: int | None = None, step_size: float | None = None, targeted: bool = False,
           target: int | torch.Tensor | None = None, seed: int = 0, restarts: int = 1,
           batch_size: int = 128) -> AttackResult:
    """Adversarial examples for `model` (logits from images in [0, 1]) at inputs `x` (B, C, H, W).

    `y`: the true labels (default: the model's clean predictions). `eps` bounds the perturbation
    in `norm`; Carlini-Wagner minimises the L2 norm instead, and its examples count only where
    that norm is at most eps (the others are returned unperturbed). `step_size` defaults to
    2.5 * eps / steps for PGD (Madry et al.), 2 * eps for APGD's first step (AutoAttack), and for
    Carlini-Wagner it is the learning rate (default 0.01); AutoAttack and Square set their own.
    `steps` is every gradient attack's iterations (AutoAttack's published 100 by default for
    autoattack and apgd when steps is None); Square takes 50 queries a step. `restarts` are PGD's
    and APGD's random starts. A targeted attack aims every input at `target` (one class, or one
    per input)."""
    n_classes = int(getattr(model, "num_classes", 0)) or int(_predict_logits_width(model, x))
    if steps is None:
        steps = 100 if method in ("apgd", "autoattack", "square") else 40
    check(method, eps, norm, steps, n_classes, targeted, target)
    model = model.eval()
    x = x.detach().float().cpu().clamp(0, 1)
    clean = _predict(model, x)
    labels = clean if y is None else torch.as_tensor(y).long().cpu()
    tgt = None if not targeted else torch.as_tensor(target).long().expand(len(x)).clone()
    if step_size is None:
        step_size = {"cw": 0.01, "apgd": 2 * eps}.get(method, 2.5 * eps / steps)
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    goal = tgt if targeted else labels
    if method in ("autoattack", "square"):
        device = _device(model)
        runs = [(name, lambda xs, ys, a=a: a(xs.to(device), ys.to(device)).detach().cpu())
                for name, a in _torchattacks(method, model, eps=eps, norm=norm, steps=steps, n_classes=n_classes,
                                             seed=seed)]
    else:
        clf = _art_classifier(model, x, n_classes)
        runs = [(type(a).__name__, lambda xs, ys, a=a: torch.from_numpy(
                    a.generate(xs.numpy(), y=np.eye(n_classes, dtype=np.float32)[ys])))
                for a in _art_attack(method, clf, eps=eps, norm=norm, steps=steps, step_size=step_size,
                                     targeted=targeted, restarts=restarts, batch_size=batch_size)]
    x_adv = x.clone()
    todo = torch.ones(len(x), dtype=torch.bool)
    parts = {}
    for name, run in runs:
        idx = todo.nonzero().squeeze(1)
        if len(idx):
            found = run(x[idx], goal[idx])
            x_adv[idx] = found.float().clamp(0, 1)
            pred = _predict(model, x_adv[idx])
            todo[idx] = pred != goal[idx] if targeted else pred == labels[idx]
        parts[name] = float((todo & (clean == labels)).float().mean()) if not targeted else float("nan")
    delta = (x_adv - x).flatten(1)
    if method == "cw":  # a minimum-norm attack: only perturbations inside the budget count
        within = delta.norm(dim=1) <= eps + 1e-6
        x_adv = torch.where(within.view(-1, 1, 1, 1), x_adv, x)
        delta = (x_adv - x).flatten(1)
    adv = _predict(model, x_adv)
    success = adv == tgt if targeted else adv != labels
    return AttackResult(x_adv=x_adv, labels=labels, clean_pred=clean, adv_pred=adv, success=success,
                        linf=delta.abs().max(1).values, l2=delta.norm(dim=1), target=tgt,
                        parts=parts if method == "autoattack" else None)


def _predict_logits_width(model: nn.Module, x: torch.Tensor) -> int:
    with torch.no_grad():
        return model(x[:1].float().to(_device(model))).shape[1]


def pgd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 40,
        step_size: float | None = None, norm: str = "linf", random_start: bool = True, targeted: bool = False,
        generator: torch.Generator | None = None) -> torch.Tensor:
    """Projected gradient descent in plain torch, on x's device: adversarial examples in the
    eps-ball of `norm` around x (B, C, H, W) in [0, 1] that raise the cross-entropy of `y` (or,
    targeted, lower it for `y` the targets). For training loops; evaluations use attack()."""
    step_size = 2.5 * eps / steps if step_size is None else step_size
    was_training = model.training
    model.eval()  # batch norm and dropout as at test time while the attack runs
    x = x.detach()
    delta = torch.zeros_like(x)
    if random_start:
        noise = torch.rand(x.shape, generator=generator).to(x.device)
        if norm == "linf":
            delta = (2 * noise - 1) * eps
        else:
            d = torch.randn(x.shape, generator=generator).to(x.device)
            r = noise.flatten(1)[:, :1].view(-1, *[1] * (x.dim() - 1)) ** (1 / math.prod(x.shape[1:]))
            delta = d / d.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1)) * eps * r
        delta = (x + delta).clamp(0, 1) - x
    sign = -1.0 if targeted else 1.0
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            if norm == "linf":
                delta = (delta + sign * step_size * grad.sign()).clamp(-eps, eps)
            else:
                g = grad / grad.flatten(1).norm(dim=1).clamp(min=1e-12).view(-1, *[1] * (x.dim() - 1))
                delta = delta + sign * step_size * g
                scale = (eps / delta.flatten(1).norm(dim=1).clamp(min=1e-12)).clamp(max=1.0)
                delta = delta * scale.view(-1, *[1] * (x.dim() - 1))
            delta = (x + delta).clamp(0, 1) - x
    model.train(was_training)
    return (x + delta).detach()
