"""The model layer on its own: pure PyTorch, no Ray."""
import dataclasses
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from genray.models import build, family_names, seeded
from genray.models.codecs import CharVocab, from_png, grid, to_png
from genray.models.errors import OptionError
from genray.models.families.vae import discretized_logistic_log_prob
from genray.trainers.datasets import shakespeare_text, sklearn_digits
from genray.trainers.presets import training_config


def optimizers(m, **overrides):
    """The family's optimizers with its preset numbers (the ones `genray train` uses)."""
    preset = training_config(m.family, m.modality).optimizer()
    return m.make_optimizers(dataclasses.replace(preset, **overrides))


@pytest.fixture(scope="module")
def text_rows():
    text = shakespeare_text()[0][:60_000]
    vocab = CharVocab.from_text(text)
    ids = torch.as_tensor(vocab.encode(text))
    rows = ids[: (len(ids) // 65) * 65].view(-1, 65)  # (N, 65)
    return vocab, rows[:-40], rows[-40:]


@pytest.fixture(scope="module")
def digits():
    images, labels = sklearn_digits()
    return torch.as_tensor(images), torch.as_tensor(labels)


def test_every_family_is_registered():
    assert family_names() == ["ar", "flow", "gan", "markov", "music-gan", "rnn", "transformer", "vae"]
    assert family_names("classifier") == ["classifier"]
    with pytest.raises(ValueError, match="unknown model family"):
        build({"family": "nope"})


# ---- markov ----------------------------------------------------------------------------------

def _fit_markov(vocab, train, order=3):
    m = build({"family": "markov", "vocab": vocab.chars, "order": order})
    m.train_step({"tokens": train}, [])
    m.reduce_statistics(lambda t: None)
    return m


def test_markov_next_symbol_probabilities_sum_to_one(text_rows):
    vocab, train, _ = text_rows
    m = _fit_markov(vocab, train)
    hist = torch.randint(-1, len(vocab), (50, 3))
    hist[hist < 0] = -1
    p = m.next_probs(hist)
    assert p.shape == (50, len(vocab))
    assert torch.allclose(p.sum(1), torch.ones(50, dtype=torch.float64), atol=1e-12)
    assert bool((p > 0).all())


def test_markov_fitting_lowers_heldout_nll_and_log_prob_is_exact(text_rows):
    vocab, train, val = text_rows
    untrained = build({"family": "markov", "vocab": vocab.chars, "order": 3})
    nll0, n = untrained.eval_nll({"tokens": val})
    assert nll0 / n == pytest.approx(math.log(len(vocab)))
    m = _fit_markov(vocab, train)
    nll1, _ = m.eval_nll({"tokens": val})
    assert nll1 / n < 0.6 * nll0 / n
    # Summing next_probs along a sequence gives the same log-probability as the vectorised path.
    seq = val[0, :20]
    step = 0.0
    for t in range(len(seq)):
        hist = torch.full((1, 3), -1)
        ctx = seq[max(0, t - 3):t]
        if len(ctx):
            hist[0, -len(ctx):] = ctx
        step += math.log(m.next_probs(hist)[0, seq[t]])
    assert float(m.log_prob(seq[None])) == pytest.approx(step, rel=1e-9)


def test_markov_counts_reduce_like_one_worker(text_rows):
    vocab, train, val = text_rows
    whole = _fit_markov(vocab, train)
    a, b = (build({"family": "markov", "vocab": vocab.chars, "order": 3}) for _ in range(2))
    a.train_step({"tokens": train[::2]}, [])
    b.train_step({"tokens": train[1::2]}, [])
    # Emulate the all-reduce of two workers: each adds the other's pending counts.
    pending_b = [getattr(b, f"pending{k}").clone() for k in range(4)]
    pending_a = [getattr(a, f"pending{k}").clone() for k in range(4)]
    it_a, it_b = iter(pending_b), iter(pending_a)
    a.reduce_statistics(lambda t: t.add_(next(it_a)))
    b.reduce_statistics(lambda t: t.add_(next(it_b)))
    assert a.eval_nll({"tokens": val}) == pytest.approx(whole.eval_nll({"tokens": val}))
    assert b.eval_nll({"tokens": val}) == pytest.approx(whole.eval_nll({"tokens": val}))


def test_markov_state_roundtrip_is_sparse_and_exact(text_rows):
    vocab, train, val = text_rows
    m = _fit_markov(vocab, train)
    state = m.state_dict()
    assert all(v.numel() < 200_000 for v in state.values())
    m2 = build(m.config())
    m2.load_state_dict(state)
    assert m2.eval_nll({"tokens": val}) == m.eval_nll({"tokens": val})


def test_markov_samples_decode_and_follow_seed(text_rows):
    vocab, train, _ = text_rows
    m = _fit_markov(vocab, train)
    a = m.sample(3, prompt="KING", max_tokens=50, generator=seeded(7))
    b = m.sample(3, prompt="KING", max_tokens=50, generator=seeded(7))
    assert a == b and len(set(a)) > 1
    assert all(s.startswith("KING") and len(s) == 54 and not vocab.unknown(s) for s in a)


# ---- transformer -------------------------------------------------------------------------------

def _assert_loss_falls(m, train, val, lr=None, steps=60, drop=0.8):
    """steps of 16 random training rows lower the validation NLL by more than drop nats/char."""
    opt = optimizers(m, **({"lr": lr} if lr else {}))
    nll0, n = m.eval_nll({"tokens": val})
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        m.train_step({"tokens": train[torch.randint(len(train), (16,), generator=g)]}, opt)
    nll1, _ = m.eval_nll({"tokens": val})
    assert nll1 / n < nll0 / n - drop


def _small_gpt(vocab, block_size=32):
    torch.manual_seed(0)
    return build({"family": "transformer", "vocab": vocab.chars, "n_layer": 2, "n_embd": 32, "n_head": 4,
                  "block_size": block_size})


def test_transformer_loss_falls(text_rows):
    vocab, train, val = text_rows
    m = _small_gpt(vocab)
    _assert_loss_falls(m, train, val, lr=3e-3)


@pytest.mark.parametrize("positions", ["rope", "learned"])
def test_kv_cache_sampling_equals_full_recomputation(text_rows, positions):
    """Rotary: the rolling cache past the block gives the samples of recomputing the whole
    sequence under the same attention window. Learned: the cache serves within the block, and
    the last block is recomputed after it, with or without a cache."""
    vocab, train, _ = text_rows
    torch.manual_seed(0)
    m = build({"family": "transformer", "vocab": vocab.chars, "n_layer": 2, "n_embd": 32, "n_head": 4,
               "block_size": 16, "positions": positions}).eval()
    _assert_loss_falls(m, train, train[:8], lr=3e-3, drop=0.05)
    m.eval()
    # 40 steps run past the 16-symbol block.
    kw = dict(prompt=["ROMEO", "JU"], max_tokens=40, temperature=0.9, top_k=[None, 5], top_p=[0.9, None])
    cached = m.sample(2, generator=[seeded(3), seeded(4)], **kw)
    m.use_kv_cache = False
    full = m.sample(2, generator=[seeded(3), seeded(4)], **kw)
    assert cached == full
    assert [len(s) for s in cached] == [45, 42]


def test_rotary_window_slides_past_the_block(text_rows):
    """Past the block a position attends to the last block_size symbols only: the logits at the
    end of a long sequence equal those of its last block recomputed alone for the first layer's
    receptive field, and differ from a model whose attention saw everything."""
    from genray.models.families.transformer import CausalSelfAttention, rotary

    torch.manual_seed(0)
    attn = CausalSelfAttention(16, 2, 0.0).eval()
    x = torch.randn(1, 40, 16)  # (B, T, C)
    rot = rotary(torch.arange(40), 8)
    y, (k, _) = attn(x, None, rot, window=8)
    tail, _ = attn(x[:, -8:], None, rotary(torch.arange(32, 40), 8), window=8)
    assert torch.allclose(y[:, -1], tail[:, -1], atol=1e-5)  # the last position sees exactly its window
    assert k.shape[2] == 7  # the cache keeps window - 1 keys
    unbounded, _ = attn(x, None, rot)
    assert not torch.allclose(y[:, -1], unbounded[:, -1], atol=1e-3)


def test_top_p_keeps_the_smallest_nucleus():
    from genray.models.sampling import filter_logits

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.5, 0.3, 0.15, 0.05]], dtype=torch.float64))
    out = filter_logits(logits, [None, 3], [0.75, 0.1])
    assert torch.isfinite(out[0]).tolist() == [True, True, False, False]  # 0.5 + 0.3 reach 0.75
    assert torch.isfinite(out[1]).tolist() == [True, False, False, False]  # the top symbol always stays
    assert torch.equal(filter_logits(logits, [None, None], [None, 1.0]), logits)


@pytest.mark.parametrize("family", ["transformer", "rnn", "markov"])
def test_stop_sequences_and_streaming(text_rows, family):
    vocab, _, _ = text_rows
    torch.manual_seed(0)
    m = build({"family": family, "vocab": vocab.chars, **({"n_layer": 1, "n_embd": 16, "n_head": 2}
                                                          if family == "transformer" else {})}).eval()
    free = m.sample(3, prompt="A", max_tokens=60, generator=[seeded(s) for s in range(3)])
    stop = sorted({s[3:5] for s in free})  # two characters every row reaches
    stopped = m.sample(3, prompt="A", max_tokens=60, stop=stop, generator=[seeded(s) for s in range(3)])
    for f, s in zip(free, stopped):
        cut = min(f.index(t, 1) for t in stop if t in f[1:])
        assert s == f[:cut]
    streamed = ["A"] * 3
    for step in m.stream(3, prompt="A", max_tokens=60, stop=stop, generator=[seeded(s) for s in range(3)]):
        for i, piece in step:
            streamed[i] += piece
    assert streamed == stopped


def test_transformer_rows_do_not_depend_on_their_batch(text_rows):
    vocab, _, _ = text_rows
    m = _small_gpt(vocab).eval()
    alone = m.sample(2, prompt="A", max_tokens=20, generator=seeded(11))
    batched = m.sample(5, prompt=["A", "A", "B", "", "A"], max_tokens=[20, 20, 5, 7, 3],
                       generator=[seeded(11)] * 2 + [seeded(1), seeded(2), seeded(3)])
    assert batched[:2] == alone
    assert [len(s) for s in batched[2:]] == [6, 7, 4]


def test_top_k_one_is_greedy(text_rows):
    vocab, _, _ = text_rows
    m = _small_gpt(vocab).eval()
    a = m.sample(1, prompt="To", max_tokens=10, top_k=1, generator=seeded(1))
    b = m.sample(1, prompt="To", max_tokens=10, top_k=1, generator=seeded(2))
    assert a == b


# ---- rnn -------------------------------------------------------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_rnn_loss_falls_and_samples_follow_seed(text_rows, cell):
    vocab, train, val = text_rows
    torch.manual_seed(0)
    m = build({"family": "rnn", "vocab": vocab.chars, "cell": cell, "hidden": 64, "n_layer": 1})
    _assert_loss_falls(m, train, val)
    assert float(m.log_prob(val[:2]).sum().detach()) == pytest.approx(-m.eval_nll({"tokens": val[:2]})[0], rel=1e-5)
    m.eval()
    alone = m.sample(2, prompt="KING", max_tokens=30, generator=seeded(4))
    batched = m.sample(3, prompt=["KING", "KING", "Q"], max_tokens=[30, 30, 5],
                       generator=[seeded(4)] * 2 + [seeded(9)])
    assert batched[:2] == alone and all(s.startswith("KING") and len(s) == 34 for s in alone)
    with pytest.raises(ValueError, match="cell"):
        build({"family": "rnn", "vocab": vocab.chars, "cell": "tanh"})


# ---- vae -------------------------------------------------------------------------------------------

def test_discretized_logistic_is_a_distribution():
    levels = torch.arange(256, dtype=torch.float32) / 127.5 - 1.0
    mean = torch.tensor(0.1).expand(256)
    log_scale = torch.tensor(-2.0).expand(256)
    total = discretized_logistic_log_prob(levels, mean, log_scale).exp().sum()
    assert float(total) == pytest.approx(1.0, abs=1e-4)


def test_vae_loss_falls_and_samples_decode(digits):
    images, labels = digits
    torch.manual_seed(0)
    m = build({"family": "vae", "shape": [1, 8, 8], "num_classes": 10, "latent_dim": 8, "hidden": 16})
    opt = optimizers(m)
    val = {"image": images[-200:], "label": labels[-200:]}
    nll0, n = m.eval_nll(val)
    for _epoch in range(8):
        for i in range(0, 1500, 64):
            m.train_step({"image": images[i:i + 64], "label": labels[i:i + 64]}, opt)
    nll1, _ = m.eval_nll(val)
    assert nll1 / n < 0.92 * nll0 / n
    m.eval()
    x = torch.stack(m.sample(4, label=[0, 1, None, 9], generator=seeded(5)))
    assert x.shape == (4, 1, 8, 8) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.equal(x, torch.stack(m.sample(4, label=[0, 1, None, 9], generator=seeded(5))))
    png = to_png(x[0])
    assert Image.open(io.BytesIO(png)).size == (8, 8)
    # Samples follow their label: a nearest-class-mean classifier of real digits recognises them.
    assert _label_accuracy(m, images, labels) > 0.6
    # The importance-weighted bound with 8 draws is tighter than the ELBO: higher on average over
    # 200 images (by about a nat per image here), never lower.
    with torch.no_grad():
        torch.manual_seed(1)
        lp1 = m.log_prob(val["image"], val["label"], z_samples=1).mean()
        lp8 = m.log_prob(val["image"], val["label"], z_samples=8).mean()
    assert float(lp8) > float(lp1) + 0.1, (float(lp1), float(lp8))


def _label_accuracy(model, images, labels) -> float:
    """Share of class-conditional samples that a nearest-class-mean classifier of real digits
    assigns to the class they were asked for."""
    means = torch.stack([images[labels == c].float().mean(0) for c in range(10)]).flatten(1)  # (10, 64)
    fake = torch.stack(model.sample(100, label=[c for c in range(10) for _ in range(10)], generator=seeded(0))) * 255
    predicted = torch.cdist(fake.flatten(1), means).argmin(1)
    return float((predicted == torch.arange(10).repeat_interleave(10)).float().mean())


def test_gan_learns_class_conditional_digits(digits):
    images, labels = digits
    torch.manual_seed(0)
    m = build({"family": "gan", "shape": [1, 8, 8], "num_classes": 10})
    assert m.eval_nll({"image": images[:4], "label": labels[:4]}) is None
    opt = optimizers(m)
    assert len(opt) == 2
    before = _label_accuracy(m, images, labels)
    for _epoch in range(40):
        perm = torch.randperm(len(images))
        for i in range(0, len(images), 64):
            idx = perm[i:i + 64]
            out = m.train_step({"image": images[idx], "label": labels[idx]}, opt)
    assert set(out) == {"loss", "d_loss", "d_real"}
    after = _label_accuracy(m, images, labels)
    assert after > 0.6 and after > before + 0.3, (before, after)
    x = torch.stack(m.sample(3, label=[None, 2, 5], generator=seeded(1)))
    assert x.shape == (3, 1, 8, 8) and torch.equal(x, torch.stack(m.sample(3, label=[None, 2, 5], generator=seeded(1))))


@pytest.mark.parametrize("scales", [1, 2])
def test_flow_inverts_and_log_det_matches_the_jacobian(scales):
    torch.manual_seed(0)
    m = build({"family": "flow", "shape": [1, 4, 4], "n_coupling": 4, "hidden": 8, "scales": scales})
    assert len(m.couplings) == 4 * scales
    for c in m.couplings:  # leave the identity start so the test means something
        torch.nn.init.normal_(c.net[-1].weight, std=0.3)
    x = torch.randn(3, 1, 4, 4)
    z, logdet = m.flow(x)
    assert torch.allclose(m.inverse(z), x, atol=1e-5)
    jac = torch.autograd.functional.jacobian(lambda v: m.flow(v.view(1, 1, 4, 4))[0].flatten(), x[0].flatten())
    assert float(torch.linalg.slogdet(jac).logabsdet) == pytest.approx(float(logdet[0].detach()), abs=1e-4)


def test_flow_likelihood_improves_and_samples_decode(digits):
    images, _ = digits
    torch.manual_seed(0)
    m = build({"family": "flow", "shape": [1, 8, 8], "n_coupling": 4, "hidden": 16})
    opt = optimizers(m)
    val = {"image": images[-200:]}
    nll0, n = m.eval_nll(val)
    for _epoch in range(3):
        for i in range(0, 1500, 64):
            m.train_step({"image": images[i:i + 64]}, opt)
    nll1, _ = m.eval_nll(val)
    assert nll1 / n < 0.7 * nll0 / n
    x = torch.stack(m.sample(4, temperature=[1.0, 0.7, 0.5, 0.0], generator=seeded(2)))
    assert x.shape == (4, 1, 8, 8) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.equal(x, torch.stack(m.sample(4, temperature=[1.0, 0.7, 0.5, 0.0], generator=seeded(2))))


def test_vae_rejects_out_of_range_label():
    m = build({"family": "vae", "shape": [1, 8, 8], "num_classes": 10})
    with pytest.raises(OptionError, match="label") as e:
        m.sample(1, label=10)
    assert e.value.field == "label"


# ---- codecs ----------------------------------------------------------------------------------------

def test_png_roundtrip_and_grid():
    img = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    assert torch.equal(from_png(to_png(img)), img)
    g = grid(torch.rand(10, 1, 8, 8), ncol=4, pad=2)
    assert g.shape == (1, 3 * 10 + 2, 4 * 10 + 2)
    with pytest.raises(ValueError):
        to_png(torch.rand(2, 8, 8))


def test_char_vocab():
    v = CharVocab.from_text("hello world")
    assert v.decode(v.encode("hold")) == "hold"
    with pytest.raises(ValueError, match="not in the model's vocabulary"):
        v.encode("xyz")
    assert np.array_equal(v.encode(""), np.array([], dtype=np.int64))
