"""Attacks on, and defenses with, genray's image generative models (no Ray), on tiny models trained
in-process on the 8x8 digits: the VAE reconstruction attack hits its target inside its budget,
purifiers are differentiable, BPDA passes the gradient straight through, adaptive attacks beat
non-adaptive ones, and likelihoods flag noise."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from genray.models.classifiers import ImageClassifier
from genray.models.errors import OptionError
from genray.models.families.flow import RealNVP
from genray.models.families.vae import ConvVAE
from genray.models.optim import OptimizerSettings
from genray.models.robustness import (
    Defended,
    Purifier,
    anomaly_scores,
    auroc,
    evaluate_purification,
    flow_log_density,
    ood_sets,
    reconstruction_attack,
    threshold,
)
from genray.trainers.datasets import sklearn_digits

N_TRAIN = 1500


def _fit(model, x: torch.Tensor, y: torch.Tensor | None, epochs: int, batch_size: int = 64):
    """A few epochs through the model's own train_step."""
    opts = model.make_optimizers(OptimizerSettings(lr=2e-3))
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            model.train_step({"image": x[idx]} | ({} if y is None else {"label": y[idx]}), opts)
    return model.eval()


@pytest.fixture(scope="module")
def digits():
    images, labels = sklearn_digits()
    return torch.as_tensor(images), torch.as_tensor(labels)  # (N, 1, 8, 8) uint8, (N,)


@pytest.fixture(scope="module")
def val(digits):
    x, y = digits
    return x[N_TRAIN:N_TRAIN + 256].float() / 255.0, y[N_TRAIN:N_TRAIN + 256]


@pytest.fixture(scope="module")
def vae(digits):
    x, y = digits
    torch.manual_seed(0)
    return _fit(ConvVAE([1, 8, 8], 10, latent_dim=8, hidden=32), x[:N_TRAIN], y[:N_TRAIN], epochs=10)


@pytest.fixture(scope="module")
def flow(digits):
    x, _ = digits
    torch.manual_seed(0)
    return _fit(RealNVP([1, 8, 8], n_coupling=4, hidden=16), x[:N_TRAIN], None, epochs=10)


@pytest.fixture(scope="module")
def clf(digits):
    x, y = digits
    torch.manual_seed(0)
    return ImageClassifier([1, 8, 8], 10).fit(x[:N_TRAIN], y[:N_TRAIN], epochs=8)


# ---- the VAE's analysis by synthesis -----------------------------------------------------------

def test_vae_classifies_by_likelihood_and_reconstructs_through_its_class(vae, clf, val):
    x, y = val
    xg = x.clone().requires_grad_(True)
    ll = vae.class_log_likelihoods(xg)
    assert ll.shape == (len(x), 10)
    (grad,) = torch.autograd.grad(ll[:, 0].sum(), xg)  # gradient-enabled, and it reaches the pixels
    assert float(grad.abs().sum()) > 0
    ll = ll.detach()
    assert float((ll.argmax(1) == y).float().mean()) > 0.8
    # uint8 and [0, 1] float inputs are the same images
    assert torch.allclose(ll, vae.class_log_likelihoods((x * 255).round().to(torch.uint8)), atol=1e-3)
    rec, labels = (t.detach() for t in vae.reconstruct(x))
    assert rec.shape == x.shape and float(rec.min()) >= 0 and float(rec.max()) <= 1
    assert torch.equal(labels, ll.argmax(1))
    assert clf.accuracy(rec, y) > 0.8  # the reconstructions keep the digit
    forced = torch.full_like(y, 3)
    rec3, labels3 = vae.reconstruct(x, forced)
    assert torch.equal(labels3, forced) and not torch.allclose(rec3, rec)
    assert ConvVAE([1, 8, 8], 0, latent_dim=4, hidden=8).class_log_likelihoods(x[:5]).shape == (5, 1)


# ---- the reconstruction attack -----------------------------------------------------------------

@pytest.mark.parametrize("norm,eps,min_rate", [("l2", 2.0, 0.5), ("linf", 0.3, 0.3)])
def test_reconstruction_attack_reaches_the_target_inside_the_ball(vae, clf, val, norm, eps, min_rate):
    x, y = val
    x, y = x[:64], y[:64]
    target = (y + 1) % 10  # a different digit for every input
    r = reconstruction_attack(vae, x, target=target, classifier=clf, eps=eps, norm=norm, steps=50)
    s = r.summary()
    assert s["n"] == 64 and s["clean_target_rate"] < 0.1
    assert s["target_rate"] >= min_rate and s["target_rate"] > s["clean_target_rate"] + 0.25, s
    assert float((r.l2 if norm == "l2" else r.linf).max()) <= eps + 1e-5
    assert float(r.x_adv.min()) >= 0 and float(r.x_adv.max()) <= 1
    assert torch.equal(r.success, r.recon_pred == target) and torch.equal(r.target, target)
    # the reported reconstructions are the VAE's of the returned images
    assert torch.allclose(r.recon, vae.reconstruct(r.x_adv)[0], atol=1e-5)


def test_reconstruction_attack_takes_one_target_for_all(vae, clf, val):
    x, _ = val
    r = reconstruction_attack(vae, x[:16], target=4, classifier=clf, eps=2.0, steps=5)
    assert r.target.tolist() == [4] * 16


@pytest.mark.parametrize("kw,field", [
    ({"eps": 0.0}, "eps"),
    ({"eps": 65.0}, "eps"),
    ({"eps": 1.5, "norm": "linf"}, "eps"),
    ({"norm": "l1"}, "norm"),
    ({"steps": 0}, "steps"),
    ({"steps": 1001}, "steps"),
    ({"target": 10}, "target"),
    ({"target": torch.tensor([1, -1])}, "target"),
    ({"step_size": -0.1}, "step_size"),
])
def test_reconstruction_attack_rejects_bad_settings(vae, clf, val, kw, field):
    x, _ = val
    settings = {"target": 3, "classifier": clf, "eps": 1.0} | kw
    with pytest.raises(OptionError) as e:
        reconstruction_attack(vae, x[:2], **settings)
    assert e.value.field == field


@pytest.mark.parametrize("model", [lambda: ImageClassifier([1, 8, 8], 10), lambda: ConvVAE([1, 8, 8], 0)])
def test_reconstruction_attack_needs_a_class_conditional_vae(clf, val, model):
    with pytest.raises(OptionError) as e:
        reconstruction_attack(model(), val[0][:2], target=1, classifier=clf, eps=1.0)
    assert e.value.field == "model"


# ---- purification ------------------------------------------------------------------------------

def test_purifiers_stay_in_the_box_and_are_differentiable(vae, flow, val):
    x, _ = val
    noisy = (x[:32] + 0.15 * torch.randn(x[:32].shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    for model in (vae, flow):
        out = Purifier(model)(noisy).detach()
        assert out.shape == noisy.shape and float(out.min()) >= 0 and float(out.max()) <= 1
        # Exact gradients through the whole purifier (the flow's ascent included): a double copy
        # against finite differences, on a path that stays clear of the box's kinks (3 steps of
        # 0.01 move no pixel of [0.05, 0.95] onto a bound, where a difference would straddle the clamp).
        p64 = Purifier(copy.deepcopy(model).double(), steps=3, step_size=0.01)
        xg = x[:1].double().clamp(0.05, 0.95).requires_grad_(True)
        assert torch.autograd.gradcheck(p64, (xg,), eps=1e-6, atol=1e-4, rtol=1e-3)
    assert torch.equal(Purifier(vae)(noisy), vae.reconstruct(noisy)[0])
    # the flow's ascent raises its likelihood of noisy digits
    with torch.no_grad():
        before = flow_log_density(flow, noisy)
        after = flow_log_density(flow, Purifier(flow)(noisy))
    assert bool((after > before).all())


def test_bpda_passes_the_classifier_gradient_straight_through(vae, clf, val):
    x, y = val
    x, y = x[:32], y[:32]
    purifier = Purifier(vae)
    bpda, full = Defended(purifier, clf, "bpda"), Defended(purifier, clf, "full")
    assert bpda.num_classes == 10
    xg = x.clone().requires_grad_(True)
    logits = bpda(xg)
    (g_bpda,) = torch.autograd.grad(F.cross_entropy(logits, y, reduction="sum"), xg)
    purified = purifier(x).detach().requires_grad_(True)
    (g_clf,) = torch.autograd.grad(F.cross_entropy(clf(purified), y, reduction="sum"), purified)
    assert torch.allclose(logits, clf(purifier(x)), atol=1e-5)  # the forward pass purifies
    assert torch.allclose(g_bpda, g_clf, atol=1e-6)  # the backward pass is the identity
    xg = x.clone().requires_grad_(True)
    (g_full,) = torch.autograd.grad(F.cross_entropy(full(xg), y, reduction="sum"), xg)
    assert not torch.allclose(g_full, g_bpda, atol=1e-3)  # the full gradient goes through the VAE


def test_adaptive_attack_is_at_least_as_strong_as_the_non_adaptive_one(vae, clf, val):
    x, y = val
    r = evaluate_purification(Purifier(vae), clf, x[:128], y[:128], eps=0.1, steps=20)
    assert r["clean"] > 0.85 and r["purified_clean"] > 0.8
    assert r["undefended"] < r["clean"] - 0.3
    assert r["adaptive_full"] <= r["nonadaptive"], r
    assert r["adaptive_bpda"] < r["purified_clean"] - 0.2, r
    assert r["adaptive"] == min(r["adaptive_bpda"], r["adaptive_full"], r["adaptive_label"]), r


# ---- likelihood-based detection ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["vae", "flow"])
def test_likelihood_flags_noise_and_threshold_holds_its_false_positive_rate(request, val, name):
    model = request.getfixturevalue(name)
    x, _ = val
    normal = anomaly_scores(model, x)
    assert normal.shape == (len(x),) and torch.equal(normal, anomaly_scores(model, x))  # reproducible
    assert 0 < float(normal.mean()) < 8  # bits per dimension: better than coding pixels uniformly
    ood = ood_sets([1, 8, 8], 128, seed=0, x=x)
    assert auroc(normal, anomaly_scores(model, ood["noise"])) > 0.95
    cut = threshold(normal, fpr=0.05)
    assert 0.04 <= float((normal > cut).float().mean()) <= 0.06


def test_auroc_and_threshold_on_known_scores():
    assert auroc(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])) == 1.0
    assert auroc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 0.0
    scores = torch.arange(100.0)
    assert int((scores > threshold(scores, fpr=0.1)).sum()) == 10


def test_ood_sets_fit_the_model_shape():
    small = ood_sets([1, 8, 8], 16, x=torch.zeros(20, 1, 8, 8))
    assert set(small) == {"noise", "inverted"} and bool((small["inverted"] == 1).all())
    big = ood_sets([3, 28, 28], 16, seed=2)
    assert set(big) == {"noise", "digits-upscaled"}
    for v in big.values():
        assert v.shape == (16, 3, 28, 28) and float(v.min()) >= 0 and float(v.max()) <= 1
    assert torch.equal(big["noise"], ood_sets([3, 28, 28], 16, seed=2)["noise"])


@pytest.mark.parametrize("call,field", [
    (lambda m: Purifier(m["clf"]), "model"),
    (lambda m: Purifier(m["vae"], steps=0), "steps"),
    (lambda m: Purifier(m["flow"], step_size=0.0), "step_size"),
    (lambda m: Defended(Purifier(m["vae"]), m["clf"], gradient="straight"), "gradient"),
    (lambda m: evaluate_purification(Purifier(m["vae"]), m["clf"], m["x"], m["y"], eps=0.1, eot=4), "eot"),
    (lambda m: evaluate_purification(Purifier(m["vae"]), m["clf"], m["x"], m["y"], eps=2.0), "eps"),
    (lambda m: anomaly_scores(m["clf"], m["x"]), "model"),
    (lambda m: threshold(torch.ones(4), fpr=1.0), "fpr"),
    (lambda m: ood_sets([8, 8], 4), "shape"),
    (lambda m: ood_sets([1, 8, 8], 4, x=torch.zeros(2, 1, 28, 28)), "x"),
])
def test_bad_settings_name_the_field(vae, flow, clf, val, call, field):
    with pytest.raises(OptionError) as e:
        call({"vae": vae, "flow": flow, "clf": clf, "x": val[0][:4], "y": val[1][:4]})
    assert e.value.field == field


@pytest.mark.parametrize("name", ["vae", "flow"])
def test_the_attack_that_knows_the_detector_evades_it_more_often(request, clf, val, name):
    """Carlini & Wagner's joint loss, at the threshold that flags 5% of other clean images: more
    images end misclassified *and* unflagged than under plain PGD, inside the same ball."""
    from genray.models.robustness import anomaly_scores, attack, evasive_pgd, threshold

    detector = request.getfixturevalue(name)
    x, y = val[0][:64], val[1][:64]
    t = threshold(anomaly_scores(detector, val[0][64:]), fpr=0.05)

    def evaded(x_adv):
        with torch.no_grad():
            wrong = clf(x_adv).argmax(1) != y
        return float((wrong & (anomaly_scores(detector, x_adv) <= t)).float().mean())

    naive = attack(clf, x, y, method="pgd", eps=0.1, steps=20)
    aware = evasive_pgd(clf, detector, x, y, eps=0.1, threshold=t, steps=20, weights=(1.0, 10.0), restarts=2)
    assert float((aware - x).abs().max()) <= 0.1 + 1e-6 and float(aware.min()) >= 0 and float(aware.max()) <= 1
    assert naive.robust_accuracy < 0.6  # the plain attack works on the classifier
    assert evaded(aware) > evaded(naive.x_adv), (evaded(aware), evaded(naive.x_adv))
