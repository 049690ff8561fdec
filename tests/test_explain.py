"""Explanations (models/explain): every (family, method) pair runs and keeps the input's shape;
exact answers where they are known (AR lags, a Markov chain's backoff); attributions that find
a planted signal; faithfulness numbers, curves and pictures. Tiny models trained in-process."""
from __future__ import annotations

import io
import math
import random

import pytest
import torch
from PIL import Image

from genray.models.catalog import build
from genray.models.errors import OptionError
from genray.models.explain import METHODS, dependence, explain
from genray.models.explain.catalog import explain_methods
from genray.models.explain.faithfulness import evaluate
from genray.models.explain.render import curves_png, grid_png, heatmap_png, text_html
from genray.models.optim import OptimizerSettings

SHAPE = [1, 8, 8]
VOCAB = "abcd"


pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")]


def _fit_series(model, series: torch.Tensor):
    model.train_step({"series": series[None], "first": torch.zeros(1, dtype=torch.long)}, [])
    model.reduce_statistics(lambda t: None)
    return model


@pytest.fixture(scope="module")
def series() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.zeros(600, dtype=torch.float64)
    noise = torch.randn(600, generator=g, dtype=torch.float64)
    for t in range(2, 600):
        x[t] = 0.6 * x[t - 1] - 0.3 * x[t - 2] + noise[t]
    return x


def _model(family: str, series=None):
    torch.manual_seed(0)
    if family in ("classifier", "vae", "gan", "flow"):
        extra = {"num_classes": 10} if family != "flow" else {}
        m = build({"family": family, "shape": SHAPE, **extra})
    elif family == "ar":
        m = _fit_series(build({"family": "ar", "max_order": 4}), series)
    else:
        m = build({"family": family, "vocab": VOCAB})
    return m.eval()


def _inputs(family: str, series):
    if family in ("classifier", "vae", "gan", "flow"):
        return torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(1))
    if family == "ar":
        return series[:40]
    return ["abca", "dcba"]


ALL = [(f, m) for f in ("classifier", "vae", "gan", "flow", "transformer", "rnn", "ar") for m in METHODS]


@pytest.mark.parametrize("family,method", ALL)
def test_every_family_and_method_attributes_in_the_inputs_shape(family, method, series):
    model = _model(family, series)
    x = _inputs(family, series)
    target = 3 if family == "gan" else None  # the conditional GAN's discriminator needs the class
    e = explain(model, x, method=method, target=target,
                **({"n_samples": 16} if method in ("kernelshap", "lime", "smoothgrad", "gradshap") else {}))
    expected = {"ar": (1, 40), "transformer": (2, 4), "rnn": (2, 4)}.get(family) or tuple(x.shape)
    assert tuple(e.attributions.shape) == expected
    assert torch.isfinite(e.attributions).all()
    assert e.attributions.abs().sum() > 0
    assert len(e.described) == expected[0]


def test_ar_integrated_gradients_equal_coefficient_times_value(series):
    """For a linear forecast, IG against a zero baseline is exactly coefficient x value."""
    model = _model("ar", series)
    x = series[100:130]
    e = explain(model, x, method="ig", baseline=0.0)
    p = model.max_order
    expected = torch.zeros(len(x), dtype=torch.float64)
    expected[-p:] = (model.coef[1:p + 1] * x[-p:].flip(0)).flip(0)
    assert torch.allclose(e.attributions[0], expected, atol=1e-10)
    # completeness: the attributions sum to forecast - intercept
    assert float(e.attributions.sum()) == pytest.approx(float(e.scores[0] - model.coef[0]), abs=1e-8)
    assert max(e.diagnostics["completeness_delta"]) < 1e-8


# ---- a Markov chain against the gradient methods, where the answer is known ---------------------
def _planted_text(n: int = 6000) -> str:
    """Two interleaved chains: each symbol is a fixed function of the one two places back (90% of
    the time), so the symbol two back explains the next one and the symbol before it does not."""
    rng = random.Random(0)
    f = {"a": "b", "b": "c", "c": "d", "d": "a"}
    s = [rng.choice(VOCAB), rng.choice(VOCAB)]
    for _ in range(n):
        s.append(f[s[-2]] if rng.random() < 0.9 else rng.choice(VOCAB))
    return "".join(s)


@pytest.fixture(scope="module")
def planted_text() -> str:
    return _planted_text()


def test_markov_exact_shares_sum_to_the_log_probability_and_find_the_planted_position(planted_text):
    m = build({"family": "markov", "vocab": VOCAB, "order": 3})
    ids = torch.as_tensor(m.vocab.encode(planted_text))[None]
    m.train_step({"tokens": ids}, [])
    m.reduce_statistics(lambda t: None)
    prompts = ["dacb", "cbad", "abcd"]  # next: f(two back) = d, b, d
    e = explain(m, prompts, method="exact")
    assert [d["next"] for d in e.described] == ["d", "b", "d"]
    # exact completeness: log p(next | context) - log p(next | no context)
    assert torch.allclose(e.attributions.sum(1), e.scores - e.baseline_scores, atol=1e-12)
    assert (e.attributions[:, 0] == 0).all()  # beyond the order: exactly nothing
    assert (e.attributions.argmax(1) == 2).all()  # two symbols back (position T - 2)
    assert (e.attributions[:, 2] > 3 * e.attributions[:, 3].abs()).all()


@pytest.mark.parametrize("family", ["transformer", "rnn"])
def test_gradient_methods_agree_with_the_markov_chain_on_the_planted_position(family, planted_text):
    torch.manual_seed(0)
    cfg = {"family": "transformer", "vocab": VOCAB, "n_layer": 1, "n_embd": 32, "n_head": 4, "block_size": 32} \
        if family == "transformer" else {"family": "rnn", "vocab": VOCAB, "n_embd": 16, "hidden": 64, "n_layer": 1}
    m = build(cfg)
    ids = torch.as_tensor(m.vocab.encode(planted_text))
    opt = m.make_optimizers(OptimizerSettings(lr=3e-3))
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        starts = torch.randint(len(ids) - 17, (32,), generator=g)
        m.train_step({"tokens": torch.stack([ids[s:s + 17] for s in starts])}, opt)
    m.eval()
    for method in ("ig", "occlusion"):
        e = explain(m, ["dacb", "cbad", "abcd"], method=method)
        assert [d["next"] for d in e.described] == ["d", "b", "d"], method
        assert (e.attributions.argmax(1) == 2).all(), (method, e.attributions)


# ---- a classifier with a planted, class-revealing patch ---------------------------------------------
def test_attribution_mass_falls_on_a_planted_patch():
    """Four classes of noise images; each class has a bright 3 x 3 patch in its own corner, the
    only thing that tells the classes apart."""
    g = torch.Generator().manual_seed(0)
    n, H = 800, 12
    y = torch.randint(0, 4, (n,), generator=g)
    x = torch.rand(n, 1, H, H, generator=g) * 0.5
    corners = [(1, 1), (1, 8), (8, 1), (8, 8)]
    mask = torch.zeros(4, 1, H, H)
    for k, (r, c) in enumerate(corners):
        mask[k, :, r:r + 3, c:c + 3] = 1
    x = torch.where(mask[y] > 0, torch.ones_like(x), x)
    torch.manual_seed(0)
    m = build({"family": "classifier", "shape": [1, H, H], "num_classes": 4})
    m.fit((x * 255).to(torch.uint8), y, epochs=6)
    m.eval()
    test_x, test_y = x[:16], y[:16]
    assert m.accuracy(test_x, test_y) == 1.0
    for method in ("ig", "smoothgrad", "gradshap", "occlusion"):
        e = explain(m, test_x, method=method)
        mass = e.attributions.clamp(min=0)
        on_patch = (mass * mask[test_y]).flatten(1).sum(1) / mass.flatten(1).sum(1)
        assert float(on_patch.mean()) > 0.5, (method, on_patch)  # the patch is 6% of the pixels
    r = evaluate(explain(m, test_x, method="ig"), metrics=False)
    assert sum(r["deletion"]["auc"]) < 0.6 * sum(r["deletion"]["random_auc"])
    # Random insertion finds a 9-pixel patch soon too: the most attributed first still wins.
    assert sum(r["insertion"]["auc"]) > 1.1 * sum(r["insertion"]["random_auc"])


def test_faithfulness_numbers_for_each_kind(series):
    clf = _model("classifier")
    x = _inputs("classifier", series)
    e = explain(clf, x, method="ig", n_steps=32)
    r = evaluate(e, n_steps=16)
    for key in ("deletion", "insertion"):
        assert len(r[key]["auc"]) == 2 and len(r[key]["curve"][0]) == 21
        assert r[key]["curve"][0][0] == pytest.approx(0.0 if key == "insertion" else 1.0, abs=1e-5)
        assert r[key]["curve"][0][-1] == pytest.approx(1.0 if key == "insertion" else 0.0, abs=1e-5)
        assert "edge_auc" in r[key]
    assert len(r["infidelity"]) == 2 and all(v >= 0 for v in r["infidelity"])
    assert len(r["max_sensitivity"]) == 2 and len(r["completeness_relative_delta"]) == 2
    lm = _model("transformer")
    r = evaluate(explain(lm, ["abca"], method="saliency"), metrics=False)
    assert len(r["deletion"]["curve"][0]) == 5 and "edge_auc" not in r["deletion"]  # 4 symbols: 5 points


def test_integrated_gradients_completeness_on_a_vae_and_a_flow():
    for family in ("vae", "flow"):
        m = _model(family)
        e = explain(m, torch.rand(2, *SHAPE, generator=torch.Generator().manual_seed(2)), method="ig", n_steps=256)
        gap = (e.scores - e.baseline_scores).abs()
        assert torch.allclose(e.attributions.flatten(1).sum(1).to(gap.dtype), e.scores - e.baseline_scores,
                              rtol=0.02, atol=1e-3 * float(gap.max())), family


# ---- global methods and pictures --------------------------------------------------------------------
def test_ar_partial_dependence_is_a_line_of_the_lags_coefficient(series):
    m = _model("ar", series)
    c = dependence.lag_curves(m, torch.stack([series[:40], series[40:80]]), feature=2, points=5)
    slope = (c.ice[:, -1] - c.ice[:, 0]) / (c.grid[-1] - c.grid[0])
    assert torch.allclose(slope, m.coef[2].expand(2), atol=1e-9)
    assert c.pdp.shape == (5,) and c.ice.shape == (2, 5)


def test_latent_curves_and_traversals_of_a_vae_and_a_gan():
    judge = _model("classifier")
    for family in ("vae", "gan"):
        m = _model(family)
        images = torch.rand(3, *SHAPE) if family == "vae" else None
        z, y = dependence.latents(m, images, 3, None, seed=0)
        c = dependence.latent_curves(m, z, y, feature=1, points=7, judge=judge)
        assert c.ice.shape == (3, 7) and bool(((c.ice >= 0) & (c.ice <= 1)).all())
        grid = dependence.traversal(m, z, y, dims=[0, 1], points=5)
        assert grid.shape == (2, 5, *SHAPE)
        assert not torch.allclose(grid[0, 0], grid[0, -1])  # moving the latent changes the decode
    with pytest.raises(OptionError) as err:
        dependence.latent_curves(m, z, y, feature=999, points=7, judge=judge)
    assert err.value.field == "feature"


def test_pictures_decode():
    x = torch.rand(1, 8, 8)
    png = Image.open(io.BytesIO(heatmap_png(x, torch.randn(1, 8, 8))))
    assert png.size[0] > 2 * png.size[1] - 40 and png.size[1] >= 224
    assert Image.open(io.BytesIO(grid_png(torch.rand(2, 3, 1, 8, 8)))).size[1] >= 224
    plot = Image.open(io.BytesIO(curves_png(torch.linspace(0, 1, 5), torch.rand(3, 5), "z", "p", "t")))
    assert plot.size == (500, 350)
    snippet = text_html(["<", "b", "\n"], [1.0, -0.5, 0.0])
    assert snippet.count("<span title=") == 3 and "&lt;" in snippet and "rgba(" in snippet


# ---- bad input ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("family,kwargs,field", [
    ("classifier", {"method": "nope"}, "method"),
    ("classifier", {"method": "ig", "n_steps": 10_000}, "n_steps"),
    ("classifier", {"method": "saliency", "n_steps": 8}, "n_steps"),
    ("classifier", {"method": "lime", "n_samples": 0}, "n_samples"),
    ("classifier", {"method": "ig", "target": 10}, "target"),
    ("classifier", {"method": "ig", "baseline": "sky"}, "baseline"),
    ("classifier", {"method": "kernelshap", "patch": 99}, "patch"),
    ("classifier", {"method": "exact"}, "method"),
    ("flow", {"method": "ig", "target": 1}, "target"),
    ("gan", {"method": "ig"}, "target"),
    ("transformer", {"method": "ig", "target": "z"}, "target"),
    ("transformer", {"method": "ig", "baseline": "zz"}, "baseline"),
    ("markov", {"method": "ig"}, "method"),
])
def test_bad_options_name_their_field(family, kwargs, field, series):
    model = _model(family, series)
    x = _inputs(family, series)
    with pytest.raises(OptionError) as err:
        explain(model, x, **kwargs)
    assert err.value.field == field


def test_bad_inputs_name_their_field(series):
    with pytest.raises(OptionError) as err:
        explain(_model("classifier"), torch.rand(1, 1, 9, 9), method="ig")
    assert err.value.field == "inputs"
    with pytest.raises(OptionError) as err:
        explain(_model("transformer"), ["ab", "abc"], method="ig")
    assert err.value.field == "prompt"
    with pytest.raises(OptionError) as err:
        explain(_model("transformer"), "abz", method="ig")
    assert err.value.field == "prompt"
    with pytest.raises(OptionError) as err:
        explain(_model("ar", series), [1.0, math.nan, 2.0, 3.0, 4.0], method="ig")
    assert err.value.field == "series"


def test_catalog_lists_what_applies():
    assert explain_methods({"family": "markov", "vocab": VOCAB}) == ("exact",)
    assert "traversal" in explain_methods({"family": "vae"}) and "pdp" in explain_methods({"family": "ar"})
    assert "pdp" not in explain_methods({"family": "classifier"})
