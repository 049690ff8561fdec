"""Style transfer on random-filter texture statistics (no Ray): features, losses, the optimisation,
and the photographs that ship inside scikit-image."""
import pytest
import torch

from genray.models.errors import OptionError
from genray.models.style import PHOTOS, RandomFeatures, gram, photo, stats, style_distance, style_targets, transfer

pytestmark = pytest.mark.usefixtures("one_thread")


def stripes(size=32, period=4):
    x = torch.zeros(3, size, size)
    x[0, :, (torch.arange(size) // period) % 2 == 0] = 1.0  # red vertical stripes
    x[2] = 0.3
    return x


def blob(size=32):
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    g = torch.exp(-(xx**2 + yy**2) * 3)
    return torch.stack([g, 0.5 * g, 1 - g])


def test_random_features_are_fixed_by_their_seed():
    x = blob()[None]
    a, b, c = RandomFeatures(seed=0)(x), RandomFeatures(seed=0)(x), RandomFeatures(seed=1)(x)
    assert len(a) == 12 and a[0].shape == (1, 64, 32, 32) and a[-1].shape == (1, 64, 8, 8)
    assert all(torch.equal(p, q) for p, q in zip(a, b)) and not torch.equal(a[0], c[0])


def test_statistics_are_what_they_say():
    f = torch.arange(8.0).view(1, 2, 2, 2)  # channel 0: 0..3, channel 1: 4..7
    g = gram(f)[0]
    assert torch.allclose(g, torch.tensor([[14.0, 38.0], [38.0, 126.0]]) / 4)
    assert torch.allclose(stats(f)[0, :2], torch.tensor([1.5, 5.5]))
    net = RandomFeatures(filters=8, seed=0)
    same = net(stripes()[None])
    assert float(style_distance(same, style_targets(same))) == 0.0  # an image has its own style


def test_transfer_moves_toward_the_style_on_another_seeds_network_and_keeps_the_content():
    r = transfer(blob(), stripes(), steps=100, max_side=32, lr=0.05)
    s = r.summary()
    assert r.image.shape == (3, 32, 32) and 0 <= float(r.image.min()) and float(r.image.max()) <= 1
    assert s["style_reduction"] > 0.7 and s["heldout_style_reduction"] > 0.5  # measured on another seed's network
    assert 0.0 < s["content_ssim"] < 1.0
    weaker = transfer(blob(), stripes(), steps=100, max_side=32, lr=0.05, strength=0.2).summary()
    assert weaker["style_distance_after"] > s["style_distance_after"] and weaker["content_ssim"] > s["content_ssim"]


def test_sizes_follow_max_side_and_grey_images_are_taken():
    r = transfer(torch.rand(1, 40, 64), torch.rand(3, 100, 100), steps=1, max_side=32)
    assert r.image.shape == (3, 20, 32)


def test_an_abandoned_transfer_stops_at_its_next_step():
    from genray.models.errors import Cancelled

    steps = []

    def cancel():
        steps.append(1)
        return len(steps) > 3

    with pytest.raises(Cancelled):
        transfer(blob(), stripes(), steps=500, max_side=32, cancel=cancel)
    assert len(steps) == 4


def test_bad_options_name_their_field():
    for kw, field in (({"loss": "vgg"}, "loss"), ({"steps": 0}, "steps"), ({"strength": 0}, "strength"),
                      ({"strength": 1.5}, "strength"), ({"max_side": 4096}, "max_side")):
        with pytest.raises(OptionError) as e:
            transfer(blob(), stripes(), **kw)
        assert e.value.field == field


def test_built_in_photographs_ship_with_scikit_image():
    astronaut = photo("astronaut")
    assert astronaut.shape == (3, 512, 512) and 0 <= float(astronaut.min()) and float(astronaut.max()) <= 1
    assert photo("brick").shape[0] == 3  # a grey texture, as three channels
    assert "coffee" in PHOTOS
    with pytest.raises(OptionError):
        photo("lena")


def test_the_cli_writes_the_styled_png(tmp_path, capsys):
    from PIL import Image

    from genray.cli import main as cli

    out = tmp_path / "styled.png"
    assert cli(["style", "coffee", "grass", "--steps", "3", "--max-side", "24", "-o", str(out)]) == 0
    assert Image.open(out).size == (24, 16) and "content SSIM" in capsys.readouterr().out
    assert cli(["style", "coffee", str(tmp_path / "none.png")]) == 2 and "neither a file" in capsys.readouterr().err


def test_a_style_network_starts_as_the_identity_and_learns_its_style():
    from genray.models import build, weights
    from genray.models.optim import OptimizerSettings
    from genray.models.style import StyleNet

    torch.manual_seed(0)
    net = StyleNet("brick", width=4, blocks=1, style_side=64)
    crops = torch.stack([blob(), stripes(), 1 - blob(), stripes(period=2)])
    batch = {"image": (crops * 255).round().to(torch.uint8)}
    assert torch.allclose(net.stylize(crops), crops.clamp(1e-3, 1 - 1e-3), atol=1e-6)  # identity at the start
    first = net.eval_nll(batch)[0]
    opts = net.make_optimizers(OptimizerSettings(lr=1e-2))
    for _ in range(15):
        net.train()
        net.train_step(batch, opts)
    assert net.eval_nll(batch)[0] < 0.7 * first
    again = build(net.config())  # as the registry rebuilds it: the feature network is not in the weights
    weights.load_bytes(again, weights.to_bytes(net))
    assert torch.equal(again.stylize(crops), net.eval().stylize(crops))
    r = net.transfer(photo("coffee"), max_side=24)  # scored as the optimisation is
    assert r.image.shape == (3, 16, 24) and r.style_before > 0 and 0 < r.ssim <= 1
    assert net.stylize(crops[:, :, :30, :31]).shape == (4, 3, 30, 31)  # sides that do not divide by 4
    with pytest.raises(Exception, match="built-in textures"):
        StyleNet("starry-night")
