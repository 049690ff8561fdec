"""Attacks on the generative families: GCG suffixes on the character models, PGD on the GAN's
discriminator. Tiny models trained in-process (no Ray), a few seconds on one core."""
from __future__ import annotations

import math
import random

import pytest
import torch

from genray.models.base import one_hot
from genray.models.catalog import build
from genray.models.codecs.music import END
from genray.models.errors import OptionError
from genray.models.optim import OptimizerSettings
from genray.models.robustness import discriminator_attack, suffix_attack
from genray.trainers.datasets import sklearn_digits

# Random "adjective animal" pairs: after "red " the models learn "fox", after "blue " "cat", so a
# suffix ending in "blue " (or anything that reads like it) makes "cat." after "red " likely.
PAIRS = ["red fox", "blue cat", "green dog", "pink pig", "gray owl"]
PROMPT, TARGET = "gray owl. red ", "cat."


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def text() -> str:
    rng = random.Random(0)
    return ". ".join(rng.choice(PAIRS) for _ in range(600)) + "."


def _train_lm(m, text: str, steps: int = 300, L: int = 48):
    ids = torch.as_tensor(m.vocab.encode(text))
    opt = m.make_optimizers(OptimizerSettings(lr=3e-3))
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        starts = torch.randint(len(ids) - L, (16,), generator=g)
        m.train_step({"tokens": torch.stack([ids[s: s + L] for s in starts])}, opt)  # (16, L)
    return m


@pytest.fixture(scope="module", params=["transformer", "rnn"])
def lm(request, text):
    torch.manual_seed(0)
    vocab = "".join(sorted(set(text)))
    if request.param == "transformer":
        cfg = {"family": "transformer", "vocab": vocab, "n_layer": 1, "n_embd": 32, "n_head": 4, "block_size": 64}
    else:
        cfg = {"family": "rnn", "vocab": vocab, "n_embd": 16, "hidden": 64, "n_layer": 1}
    return _train_lm(build(cfg), text)


@pytest.fixture(scope="module")
def gpt(text):
    torch.manual_seed(0)
    m = build({"family": "transformer", "vocab": "".join(sorted(set(text))), "n_layer": 1, "n_embd": 32,
               "n_head": 4, "block_size": 64})
    return _train_lm(m, text, steps=100)


@pytest.fixture(scope="module")
def gan():
    images, labels = sklearn_digits()
    images, labels = torch.from_numpy(images), torch.from_numpy(labels)
    torch.manual_seed(0)
    m = build({"family": "gan", "shape": [1, 8, 8], "num_classes": 10, "latent_dim": 16, "hidden": 16})
    opt = m.make_optimizers(OptimizerSettings(lr=2e-3, betas=(0.5, 0.999)))
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        i = torch.randint(1500, (64,), generator=g)
        m.train_step({"image": images[i], "label": labels[i]}, opt)
    held = slice(1500, 1628)  # images the discriminator never saw
    return m, images[held].float() / 255.0, labels[held]


# ---- embedding-level access ----------------------------------------------------------------------

def test_logits_from_embeddings_equal_logits(lm):
    lm.eval()
    idx = torch.randint(len(lm.vocab), (3, 40), generator=torch.Generator().manual_seed(1))  # (B, T)
    table = lm.token_embedding()
    assert isinstance(table, torch.nn.Embedding) and table.weight.shape[0] == len(lm.vocab)
    with torch.no_grad():
        ref = lm.logits(idx)[0]  # (B, T, V)
        assert torch.allclose(lm.logits_from_embeddings(table(idx)), ref, atol=1e-5)
        # Not an identity on the tokens: other embeddings give other logits.
        assert not torch.allclose(lm.logits_from_embeddings(table(idx) * 0.5), ref, atol=1e-3)
    # Gradients reach a one-hot through the table, which is what GCG needs.
    onehot = torch.nn.functional.one_hot(idx[:1], len(lm.vocab)).float().requires_grad_(True)  # (1, T, V)
    lm.logits_from_embeddings(onehot @ table.weight)[0, -1, 0].backward()
    assert onehot.grad.abs().sum() > 0


def test_families_without_embeddings_refuse(text):
    markov = build({"family": "markov", "vocab": "".join(sorted(set(text)))})
    with pytest.raises(NotImplementedError):
        markov.token_embedding()
    with pytest.raises(OptionError) as e:
        suffix_attack(markov, PROMPT, TARGET)
    assert e.value.field == "model"


# ---- GCG suffix ----------------------------------------------------------------------------------

def _logprob(m, context: str, target: str) -> float:
    """log P(target | context) from log_prob(), which scores every symbol after the first."""
    with torch.no_grad():
        return float(m.log_prob(context + target)[0] - m.log_prob(context)[0])


def test_suffix_attack_raises_target_logprob(lm):
    lm.train()
    r = suffix_attack(lm, PROMPT, TARGET, suffix_len=8, steps=30, samples=32)
    assert lm.training  # the mode it found
    assert len(r.suffix) == 8 and not lm.vocab.unknown(r.suffix)
    lm.eval()
    # Both numbers are the model's own, recomputed here through log_prob().
    assert r.logprob_before == pytest.approx(_logprob(lm, PROMPT, TARGET), abs=1e-3)
    assert r.logprob_after == pytest.approx(_logprob(lm, PROMPT + r.suffix, TARGET), abs=1e-3)
    assert r.logprob_before < -4.0  # after "red " the model says "fox"
    assert r.logprob_after > r.logprob_before + 4.0 and r.logprob_after > -1.0
    assert len(r.history) == r.steps == 30 and r.history[-1] == r.logprob_after
    assert all(b >= a for a, b in zip(r.history, r.history[1:]))
    assert r.hit_rate_before <= 0.1 and r.hit_rate_after >= max(r.hit_rate_before, 0.5)
    assert abs(r.hit_rate_after - math.exp(r.logprob_after)) < 0.3  # sampling agrees with the score
    s = r.summary()
    assert s["gain"] == pytest.approx(r.logprob_after - r.logprob_before) and s["suffix"] == r.suffix


@pytest.mark.parametrize("lm", ["rnn"], indirect=True)
def test_suffix_attack_follows_the_gradient(lm):
    """With 3 of 21 characters per position, only the gradient's choice finds the suffix: taking
    the highest-gradient characters instead leaves log P(target) below -3 on this model. (On the
    tiny transformer the linearisation is too weak a guide to test this way.)"""
    r = suffix_attack(lm, PROMPT, TARGET, suffix_len=8, steps=15, top_k=3, candidates=16, samples=0)
    assert r.logprob_after > -1.0


def test_suffix_attack_is_seeded(gpt):
    kw = dict(suffix_len=6, steps=5, candidates=16, samples=8)
    a, b = suffix_attack(gpt, PROMPT, TARGET, **kw), suffix_attack(gpt, PROMPT, TARGET, **kw)
    assert (a.suffix, a.history, a.hit_rate_after) == (b.suffix, b.history, b.hit_rate_after)
    assert suffix_attack(gpt, PROMPT, TARGET, samples=0, steps=1).summary()["hit_rate_before"] is None


def test_suffix_attack_fits_the_context(gpt, text):
    long_prompt = text[:100] + ". red "
    r = suffix_attack(gpt, long_prompt, TARGET, suffix_len=8, steps=3, samples=4)
    assert len(r.prompt) + 8 + len(TARGET) == gpt.block_size and long_prompt.endswith(r.prompt)
    assert r.prompt_cut == len(long_prompt) - len(r.prompt)
    with pytest.raises(OptionError) as e:
        suffix_attack(gpt, PROMPT, TARGET, suffix_len=61)  # 61 + 4 > 64
    assert e.value.field == "suffix_len"


@pytest.mark.parametrize("kw, field", [
    ({"prompt": "RED "}, "prompt"), ({"target": ""}, "target"), ({"target": "CAT"}, "target"),
    ({"target": "a" * 65}, "target"), ({"suffix_len": 0}, "suffix_len"), ({"suffix_len": 65}, "suffix_len"),
    ({"steps": 0}, "steps"), ({"steps": 501}, "steps"), ({"top_k": 0}, "top_k"), ({"candidates": 0}, "candidates"),
    ({"candidates": 1025}, "candidates"), ({"samples": -1}, "samples"), ({"samples": 257}, "samples"),
    ({"steps": 2.5}, "steps"), ({"temperature": 0.0}, "temperature"),
])
def test_suffix_attack_rejects_bad_settings(gpt, kw, field):
    args = {"prompt": PROMPT, "target": TARGET, **kw}
    with pytest.raises(OptionError) as e:
        suffix_attack(gpt, args.pop("prompt"), args.pop("target"), **args)
    assert e.value.field == field


def test_suffix_attack_needs_text():
    music = build({"family": "rnn", "vocab": [END, "n60", "n62"], "hidden": 8, "n_layer": 1})
    with pytest.raises(OptionError) as e:
        suffix_attack(music, "n60", "n62")
    assert e.value.field == "model"


# ---- GAN discriminator ---------------------------------------------------------------------------

def _scores(gan, x, labels):
    with torch.no_grad():
        return torch.sigmoid(gan.critic(x * 2 - 1, one_hot(labels, gan.num_classes, len(x))))


@pytest.mark.parametrize("norm, eps", [("linf", 0.1), ("l2", 1.0)])
def test_discriminator_attack_scores_real_images_fake(gan, norm, eps):
    model, x, labels = gan
    model.train()
    r = discriminator_attack(model, x, labels, eps=eps, norm=norm, steps=20)
    assert model.training
    assert r.x_adv.shape == x.shape and r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    delta = (r.x_adv - x).flatten(1)
    norms = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
    assert float(norms.max()) <= eps + 1e-5 and torch.allclose(r.linf, delta.abs().max(1).values)
    # The scores are the discriminator's own, recomputed here.
    assert torch.allclose(r.real_score, _scores(model, x, labels), atol=1e-5)
    assert torch.allclose(r.adv_score, _scores(model, r.x_adv, labels), atol=1e-5)
    assert torch.equal(r.fooled, (r.real_score >= 0.5) & (r.adv_score < 0.5))
    s = r.summary()
    assert s["n"] == len(x) and s["real_rate_before"] > 0.6
    assert r.adv_score.mean() < r.real_score.mean() - 0.3 and s["fooled_rate"] > 0.5
    assert s["real_rate_after"] < s["real_rate_before"] - 0.5
    # Seeded; a different seed starts PGD elsewhere.
    again = discriminator_attack(model, x, labels, eps=eps, norm=norm, steps=20)
    assert torch.equal(again.x_adv, r.x_adv)
    assert not torch.equal(discriminator_attack(model, x, labels, eps=eps, norm=norm, steps=20, seed=1).x_adv,
                           r.x_adv)


@pytest.mark.parametrize("case, field", [
    ({"eps": 0.0}, "eps"), ({"eps": 1.5}, "eps"), ({"eps": 65.0, "norm": "l2"}, "eps"), ({"norm": "l1"}, "norm"),
    ({"steps": 0}, "steps"), ({"steps": 1001}, "steps"), ({"step_size": -0.1}, "step_size"),
    ("label out of range", "labels"), ("too few labels", "labels"), ("no labels", "labels"),
    ("uint8 images", "x"), ("images past 1", "x"), ("wrong shape", "x"), ("not a GAN", "model"),
])
def test_discriminator_attack_rejects_bad_settings(gan, gpt, case, field):
    model, x, labels = gan
    x, labels, kw = x[:4], labels[:4], {"eps": 0.1}
    if isinstance(case, dict):
        kw.update(case)
    elif case == "label out of range":
        labels = torch.tensor([0, 1, 2, 10])
    elif case == "too few labels":
        labels = labels[:3]
    elif case == "no labels":
        labels = None
    elif case == "uint8 images":
        x = (x * 255).to(torch.uint8)
    elif case == "images past 1":
        x = x * 2 + 0.1
    elif case == "wrong shape":
        x = x[:, :, :4]
    elif case == "not a GAN":
        model = gpt
    with pytest.raises(OptionError) as e:
        discriminator_attack(model, x, labels, **kw)
    assert e.value.field == field
