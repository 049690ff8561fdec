"""Inpainting: masks, the baselines, and the VAE and flow inpainters on small models (no Ray)."""
import io

import pytest
import torch
from PIL import Image

from genray.models.errors import OptionError
from genray.models.families.flow import RealNVP
from genray.models.families.vae import ConvVAE
from genray.models.inpaint import (
    BASELINES,
    baseline_fill,
    inpaint,
    make_mask,
    mask_from_png,
    masked_psnr,
    per_image,
)
from genray.models.robustness.purify import flow_log_density

pytestmark = pytest.mark.usefixtures("one_thread")


def digits(n=6, size=8, seed=0):
    """Bright strokes on black, like the digits: (n, 1, size, size) in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, size, size)
    for i in range(n):
        c = int(torch.randint(1, size - 1, (1,), generator=g))
        x[i, 0, 1:-1, c] = 1.0
        x[i, 0, c, 1:-1] = torch.rand(size - 2, generator=g)
    return x


def models():
    torch.manual_seed(0)
    return {"vae": ConvVAE([1, 8, 8], num_classes=3, latent_dim=4, hidden=8),
            "flow": RealNVP([1, 8, 8], n_coupling=2, hidden=8)}


def test_named_masks_hide_what_they_say():
    centre = make_mask("center", 28, 28)
    assert centre.sum() == 14 * 14 and centre[7:21, 7:21].all()
    assert (make_mask("top", 8, 8) ^ make_mask("bottom", 8, 8)).all()
    assert (make_mask("left", 7, 7) | make_mask("right", 7, 7)).sum() == 7 * 6  # odd width: the middle column stays
    rnd = make_mask("random", 100, 100, fraction=0.3, seed=1)
    assert abs(float(rnd.float().mean()) - 0.3) < 0.02 and torch.equal(rnd, make_mask("random", 100, 100,
                                                                                         fraction=0.3, seed=1))
    with pytest.raises(OptionError) as e:
        make_mask("circle", 8, 8)
    assert e.value.field == "mask"


def test_a_drawn_mask_is_white_where_missing_and_must_fit_the_image():
    drawn = Image.new("L", (8, 6))
    drawn.paste(255, (2, 1, 5, 3))  # x 2..4, y 1..2
    buf = io.BytesIO()
    drawn.save(buf, "PNG")
    m = mask_from_png(buf.getvalue(), 6, 8)
    assert m.shape == (6, 8) and m.sum() == 6 and m[1:3, 2:5].all()
    with pytest.raises(OptionError) as e:
        mask_from_png(buf.getvalue(), 8, 8)
    assert e.value.field == "mask" and "8x6" in str(e.value)
    with pytest.raises(OptionError):
        per_image(torch.zeros(8, 8, dtype=torch.bool), 2)  # hides nothing


def test_psnr_is_over_the_hidden_pixels_only():
    x = digits()
    mask = per_image(make_mask("center", 8, 8), len(x))
    assert torch.allclose(masked_psnr(x, x, mask), torch.full((len(x),), 100.0))
    off = x.clone()
    off[mask.expand_as(x)] += 0.1  # every hidden pixel off by 0.1: MSE 0.01, 20 dB
    off[~mask.expand_as(x)] = 0.5  # seen pixels do not count
    assert torch.allclose(masked_psnr(off, x, mask), torch.full((len(x),), 20.0), atol=1e-4)


@pytest.mark.parametrize("name", BASELINES)
def test_baselines_keep_the_seen_pixels(name):
    x, train = digits(4), digits(50, seed=1)
    mask = per_image(make_mask("random", 8, 8, fraction=0.4), len(x))
    out = baseline_fill(name, x, mask, train)
    seen = ~mask.expand_as(x)
    assert torch.equal(out[seen], x[seen]) and out.min() >= 0 and out.max() <= 1


def test_nearest_neighbour_finds_the_training_image_and_blur_keeps_a_constant():
    train = digits(50, seed=1)
    x = train[[3, 17]]
    mask = per_image(make_mask("center", 8, 8), 2)
    assert torch.equal(baseline_fill("nearest", x, mask, train), x)
    flat = torch.full((1, 1, 8, 8), 0.3)
    assert torch.allclose(baseline_fill("blur", flat, mask[:1]), flat)


@pytest.mark.parametrize("family,method", [(f, m) for f, cls in (("vae", ConvVAE), ("flow", RealNVP))
                                           for m in cls.inpainting])
def test_every_inpainter_keeps_the_seen_pixels_and_repeats_with_its_seed(family, method):
    model = models()[family]
    assert model.training  # as a new module is
    x = digits(3)
    out = inpaint(model, x, make_mask("center", 8, 8), method=method, steps=6, n=2, seed=4)
    assert out.shape == (3, 2, 1, 8, 8)
    seen = ~make_mask("center", 8, 8).expand(3, 2, 1, 8, 8)
    assert torch.equal(out[seen], x[:, None].expand_as(out)[seen])
    hidden = out[~seen].view(3, 2, -1)
    assert not torch.equal(hidden, x[:, None].expand_as(out)[~seen].view(3, 2, -1))  # something was filled in
    again = inpaint(model, x, make_mask("center", 8, 8), method=method, steps=6, n=2, seed=4)
    assert torch.equal(out, again)
    assert model.training  # left as found


def test_flow_map_raises_the_density_of_the_whole_image():
    flow = models()["flow"]
    x = digits(4)
    mask = per_image(make_mask("bottom", 8, 8), len(x))
    start = inpaint(flow, x, mask, method="map", steps=1)[:, 0]
    done = inpaint(flow, x, mask, method="map", steps=60)[:, 0]
    with torch.no_grad():
        assert (flow_log_density(flow, done) > flow_log_density(flow, start)).all()


def test_vae_latent_search_fits_the_seen_pixels_better_than_its_start():
    from genray.models.inpaint.generative import _vae_latent

    vae = models()["vae"]
    x = digits(4)
    mask = per_image(make_mask("center", 8, 8), len(x))
    seen = ~mask.expand_as(x)
    with torch.enable_grad():  # the decoder's mean (B, C, H, W) after 1 and after 80 steps, same start
        early = _vae_latent(vae, x, mask, 1, torch.Generator().manual_seed(0), None)
        late = _vae_latent(vae, x, mask, 80, torch.Generator().manual_seed(0), None)
    assert float((late - x)[seen].pow(2).mean()) < float((early - x)[seen].pow(2).mean())


def test_bad_options_name_their_field():
    vae, flow = models()["vae"], models()["flow"]
    x = digits(1)
    for model, kw, field in ((vae, {"method": "map"}, "method"), (flow, {"label": 1}, "label"),
                             (vae, {"label": 3}, "label"), (vae, {"steps": 0}, "steps")):
        with pytest.raises(OptionError) as e:
            inpaint(model, x, make_mask("center", 8, 8), **kw)
        assert e.value.field == field
    with pytest.raises(OptionError) as e:
        inpaint(torch.nn.Linear(2, 2), x, make_mask("center", 8, 8))
    assert e.value.field == "model"


def test_text_infilling_lets_the_right_side_choose_the_fill():
    from genray.models import build
    from genray.models.codecs import CharVocab
    from genray.models.inpaint import infill

    text = "I love you.\nI hate him.\n" * 200
    vocab = CharVocab.from_text(text)
    lm = build({"family": "markov", "vocab": vocab.chars, "order": 4})
    ids = torch.as_tensor(vocab.encode(text))
    lm.train_step({"tokens": ids[: (len(ids) // 48) * 48].view(-1, 48)}, [])
    lm.reduce_statistics(lambda t: None)
    for right, want in ((" you.", "love"), (" him.", "hate")):
        ranked = infill(lm, "I ", right, length=4, candidates=16)
        assert ranked[0][0] == want and {f for f, _ in ranked} >= {"love", "hate"}, ranked
        assert ranked == sorted(ranked, key=lambda p: -p[1])
    assert infill(lm, "I ", " you.", length=4, candidates=16, seed=3) == infill(lm, "I ", " you.", length=4,
                                                                                candidates=16, seed=3)
    with pytest.raises(OptionError) as e:
        infill(lm, "I ", " yoü", length=4)
    assert e.value.field == "right"
    with pytest.raises(OptionError) as e:
        infill(models()["vae"], "a", "b", length=1)
    assert e.value.field == "model"
