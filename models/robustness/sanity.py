"""The sanity checks of Carlini et al. 2019 ("On Evaluating Adversarial Robustness", section 5)
that tell a robust classifier from one whose gradients hide its weakness:

    eps grows        accuracy under PGD falls as eps grows, and to ~0 at a large eps
    more effort      more steps, or more restarts, never raise the accuracy an attack leaves
    black box        a black-box attack (Square) is no stronger than the white-box ones
    unbounded        an attack with an unbounded budget (the whole [0, 1] image) always succeeds

Each check is computed here, never assumed: a model that masks its gradients fails at least one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from genray.models.robustness.attacks import attack

# The slack on "never raises": one image in a hundred, the noise of a random start.
TOLERANCE = 0.01


@dataclass
class Check:
    name: str
    passed: bool
    figures: dict  # the accuracies the check compared
    rule: str

    def to_dict(self) -> dict:
        return asdict(self)


def sanity_checks(model, x: torch.Tensor, y: torch.Tensor, *, eps: float, steps: int = 100,
                  eps_grid: tuple[float, ...] | None = None, large_eps: float = 0.5, square_steps: int = 100,
                  white_box: float | None = None, seed: int = 0) -> list[Check]:
    """The four checks on images x (B, C, H, W) in [0, 1] with labels y, at the L-inf budget eps.
    `white_box`: the lowest robust accuracy any white-box attack reached at eps (default: PGD's
    here). PGD steps are Madry et al.'s 0.01 scaled to eps / 0.3."""
    step = 0.01 * eps / 0.3

    def pgd_acc(e: float, n_steps: int = steps, restarts: int = 1, step_size: float | None = None) -> float:
        return attack(model, x, y, method="pgd", eps=e, steps=n_steps, restarts=restarts,
                      step_size=step_size or max(step, 2.5 * e / n_steps), seed=seed).robust_accuracy

    grid = eps_grid or tuple(sorted({round(eps / 3, 4), round(2 * eps / 3, 4), eps, large_eps}))
    by_eps = {e: pgd_acc(e) for e in grid}
    accs = [by_eps[e] for e in grid]
    falls = all(b <= a + TOLERANCE for a, b in zip(accs, accs[1:])) and accs[-1] <= 0.05
    checks = [Check("eps grows", falls, {f"pgd-{steps} eps {e:g}": a for e, a in by_eps.items()},
                    "accuracy never rises with eps, and is at most 5% at the largest")]

    few = max(steps // 10, 1)
    effort = {f"pgd-{few}": pgd_acc(eps, few, step_size=2.5 * eps / few),
              f"pgd-{steps}": by_eps[eps] if eps in by_eps else pgd_acc(eps),
              f"pgd-{steps}x5": pgd_acc(eps, restarts=5)}
    vals = list(effort.values())
    checks.append(Check("more effort", all(b <= a + TOLERANCE for a, b in zip(vals, vals[1:])), effort,
                        "more steps, then more restarts, never raise the accuracy left"))

    square = attack(model, x, y, method="square", eps=eps, steps=square_steps, seed=seed).robust_accuracy
    best_white = min(vals) if white_box is None else min(white_box, *vals)
    checks.append(Check("black box", square >= best_white - TOLERANCE,
                        {f"square {50 * square_steps} queries": square, "best white-box": best_white},
                        "Square (black box) leaves at least the accuracy of the best white-box attack"))

    unbounded = attack(model, x, y, method="pgd", eps=1.0, steps=steps, step_size=2.5 / steps,
                       seed=seed).robust_accuracy
    checks.append(Check("unbounded", unbounded == 0.0, {"pgd eps 1": unbounded},
                        "an attack free to change every pixel fully leaves no image correct"))
    return checks
