"""Evasion attacks on a classifier trained on the 8x8 digits (no Ray): the budget holds, attacks
lower accuracy, targeted attacks hit their target, and the hand-written PGD that training loops
use agrees with the library's."""
import numpy as np
import pytest
import torch

from genray.models.classifiers import ImageClassifier
from genray.models.errors import OptionError
from genray.models.robustness import attack, pgd
from genray.trainers.datasets import sklearn_digits


@pytest.fixture(scope="module")
def victim():
    images, labels = sklearn_digits()
    x, y = torch.as_tensor(images), torch.as_tensor(labels)
    torch.manual_seed(0)
    model = ImageClassifier([1, 8, 8], 10).fit(x[:1500], y[:1500], epochs=8)
    return model, x[1500:1756].float() / 255.0, y[1500:1756]


def test_fgsm_moves_every_pixel_by_eps_or_to_a_bound(victim):
    model, x, y = victim
    r = attack(model, x, y, method="fgsm", eps=0.1)
    delta = (r.x_adv - x).abs()
    at_eps = torch.isclose(delta, torch.tensor(0.1), atol=1e-5)
    at_bound = (r.x_adv == 0) | (r.x_adv == 1)
    assert bool((at_eps | at_bound).all())
    assert r.robust_accuracy < r.clean_accuracy - 0.2


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0)])
def test_pgd_stays_in_the_ball_and_lowers_accuracy(victim, norm, eps):
    model, x, y = victim
    r = attack(model, x, y, method="pgd", eps=eps, norm=norm, steps=20, restarts=2)
    assert float(r.linf.max() if norm == "linf" else r.l2.max()) <= eps + 1e-5
    assert float(r.x_adv.min()) >= 0 and float(r.x_adv.max()) <= 1
    assert r.clean_accuracy > 0.85 and r.robust_accuracy < 0.5 * r.clean_accuracy
    assert r.success.tolist() == (r.adv_pred != y).tolist()


def test_targeted_attack_hits_its_target(victim):
    model, x, y = victim
    r = attack(model, x, y, method="pgd", eps=0.3, steps=40, targeted=True, target=3)
    assert r.success_rate > 0.8 and (r.adv_pred == 3).float().mean() > 0.8


def test_apgd_is_at_least_as_strong_as_pgd(victim):
    model, x, y = victim
    aa = attack(model, x, y, method="apgd", eps=0.1, steps=20)
    pgd_ = attack(model, x, y, method="pgd", eps=0.1, steps=20)
    assert aa.robust_accuracy <= pgd_.robust_accuracy + 0.02
    assert float(aa.linf.max()) <= 0.1 + 1e-5


def test_apgd_starts_at_autoattacks_step_of_two_eps(victim, monkeypatch):
    """ART's eps_step is APGD's first step, which it can only halve: AutoAttack's is 2 eps."""
    from art.attacks.evasion import AutoProjectedGradientDescent

    seen = []
    init = AutoProjectedGradientDescent.__init__
    monkeypatch.setattr(AutoProjectedGradientDescent, "__init__",
                        lambda self, *a, **kw: seen.append(kw) or init(self, *a, **kw))
    model, x, y = victim
    attack(model, x[:8], y[:8], method="apgd", eps=0.3, steps=2)
    assert [kw["eps_step"] for kw in seen] == [0.6, 0.6] and [kw["max_iter"] for kw in seen] == [2, 2]


def test_autoattack_runs_the_standard_ensemble_in_turn(victim):
    """APGD-CE, APGD-T, FAB-T and Square, each on what the ones before left unbroken: the robust
    accuracy only falls along them, ends at the result's, and stays inside the ball."""
    model, x, y = victim
    r = attack(model, x[:64], y[:64], method="autoattack", eps=0.05, steps=10)
    assert list(r.parts) == ["apgd-ce", "apgd-t", "fab-t", "square"]
    accs = list(r.parts.values())
    assert all(b <= a for a, b in zip(accs, accs[1:])) and accs[-1] == pytest.approx(r.robust_accuracy)
    assert float(r.linf.max()) <= 0.05 + 1e-5 and r.robust_accuracy < r.clean_accuracy
    assert r.robust_accuracy <= attack(model, x[:64], y[:64], method="pgd", eps=0.05, steps=10).robust_accuracy


def test_worst_case_counts_an_image_broken_by_any_attack(victim):
    from genray.models.robustness.attacks import worst_case

    model, x, y = victim
    results = [attack(model, x, y, method=m, eps=0.05, steps=10) for m in ("fgsm", "pgd")]
    assert worst_case(results) <= min(r.robust_accuracy for r in results)
    assert worst_case(results) == float(torch.stack([r.adv_pred == y for r in results]).all(0).float().mean())


class _Quantized(torch.nn.Module):
    """The victim behind a rounding of its input: the gradient is zero almost everywhere, so
    gradient attacks stall while the model stays as weak as before (gradient masking)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.num_classes = model, model.num_classes

    def forward(self, x):
        return self.model(torch.round(x * 4) / 4)


def test_sanity_checks_pass_for_a_plain_model_and_catch_masked_gradients(victim):
    from genray.models.robustness.sanity import sanity_checks

    model, x, y = victim
    kw = {"eps": 0.1, "steps": 20, "square_steps": 20, "large_eps": 0.5}
    plain = {c.name: c for c in sanity_checks(model, x[:64], y[:64], **kw)}
    assert all(c.passed for c in plain.values()), [c.to_dict() for c in plain.values()]
    masked = {c.name: c for c in sanity_checks(_Quantized(model).eval(), x[:64], y[:64], **kw)}
    assert not masked["unbounded"].passed and not masked["black box"].passed, [c.to_dict() for c in masked.values()]


def test_carlini_wagner_counts_only_perturbations_within_eps(victim):
    model, x, y = victim
    r = attack(model, x[:64], y[:64], method="cw", norm="l2", eps=1.5, steps=10)
    assert float(r.l2.max()) <= 1.5 + 1e-5 and r.robust_accuracy < r.clean_accuracy


@pytest.mark.parametrize("eps", [0.05, 0.1])
def test_hand_written_pgd_agrees_with_the_library(victim, eps):
    model, x, y = victim
    library = attack(model, x, y, method="pgd", eps=eps, steps=20, seed=0).robust_accuracy
    x_adv = pgd(model, x, y, eps=eps, steps=20, generator=torch.Generator().manual_seed(0))
    assert float((x_adv - x).abs().max()) <= eps + 1e-6
    with torch.no_grad():
        hand = float((model(x_adv).argmax(1) == y).float().mean())
    assert abs(hand - library) <= 0.02, (hand, library)


@pytest.mark.parametrize("kw,field", [
    ({"method": "deepfool", "eps": 0.1}, "method"),
    ({"method": "pgd", "eps": 0.0}, "eps"),
    ({"method": "pgd", "eps": 1.5}, "eps"),
    ({"method": "pgd", "eps": 0.1, "norm": "l1"}, "norm"),
    ({"method": "cw", "eps": 0.1}, "norm"),
    ({"method": "pgd", "eps": 0.1, "steps": 0}, "steps"),
    ({"method": "pgd", "eps": 0.1, "targeted": True}, "target"),
    ({"method": "pgd", "eps": 0.1, "targeted": True, "target": 10}, "target"),
    ({"method": "autoattack", "eps": 0.1, "targeted": True, "target": 3}, "targeted"),
])
def test_bad_settings_name_their_field(victim, kw, field):
    model, x, y = victim
    with pytest.raises(OptionError) as e:
        attack(model, x[:4], y[:4], **kw)
    assert e.value.field == field


def test_labels_default_to_the_clean_predictions(victim):
    model, x, _ = victim
    r = attack(model, x[:32], method="fgsm", eps=0.05)
    assert r.clean_accuracy == 1.0 and np.array_equal(r.labels.numpy(), r.clean_pred.numpy())
