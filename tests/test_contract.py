"""The GenerativeModel contract across every family: configs captured from constructors,
one sample type per modality, strict sampling options, differentiable likelihoods."""
import inspect
import json

import pytest
import torch

from genray.models import build, family_class, family_names, seeded
from genray.models.codecs import EventVocab
from genray.models.errors import ConfigError, OptionError

TEXT = "abcdefgh \n"
EVENTS = EventVocab.from_pieces([["C4/1", "D4/1", "E4/0.5", "R/1"]]).symbols
CONFIGS = {
    "markov": {"vocab": TEXT, "order": 2},
    "rnn": {"vocab": EVENTS, "hidden": 16, "n_layer": 1, "n_embd": 8},
    "transformer": {"vocab": TEXT, "n_layer": 1, "n_embd": 16, "n_head": 2, "block_size": 8},
    "vae": {"shape": [1, 8, 8], "num_classes": 3, "latent_dim": 4, "hidden": 8},
    "gan": {"shape": [1, 8, 8], "num_classes": 3, "latent_dim": 4, "hidden": 8},
    "music-gan": {"shape": [2, 8, 16], "lowest": 60, "latent_dim": 4, "hidden": 8},
    "flow": {"shape": [1, 4, 4], "n_coupling": 2, "hidden": 8},
    "ar": {"max_order": 3},
}
SAMPLE_TYPES = {"text": str, "music": list, "series": list, "image": torch.Tensor}


def _model(family):
    torch.manual_seed(0)
    m = build({"family": family, **CONFIGS[family]})
    if family == "ar":  # fit a process so that it has an order and noise
        series = torch.sin(torch.arange(200, dtype=torch.float64) / 3)[None] + 0.1 * torch.randn(1, 200)
        m.train_step({"series": series, "first": torch.zeros(1, dtype=torch.long)}, [])
        m.reduce_statistics(lambda t: None)
    return m.eval()


def test_every_family_has_a_config():
    assert set(CONFIGS) == set(family_names())


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_config_is_captured_from_the_constructor(family):
    m = _model(family)
    config = m.config()
    params = [p for p in inspect.signature(family_class(family).__init__).parameters if p != "self"]
    assert list(config) == ["family", *params]  # every constructor argument, defaults filled in
    assert {k: config[k] for k in CONFIGS[family]} == CONFIGS[family]
    assert json.loads(json.dumps(config)) == config
    assert build(config).config() == config  # rebuilding gives the same config
    with pytest.raises(ConfigError, match="no setting"):
        build({**config, "lr": 1.0, "colour": "red"})  # "lr" alone is dropped from old configs


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_sample_returns_a_list_of_the_modality_type(family):
    m = _model(family)
    out = m.sample(3, generator=seeded(1), **({"max_tokens": 5} if "max_tokens" in m.sample_options else {}))
    assert isinstance(out, list) and len(out) == 3
    assert all(isinstance(s, SAMPLE_TYPES[m.modality]) for s in out)
    if m.modality == "image":
        assert all(s.shape == tuple(CONFIGS[family]["shape"]) for s in out)


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_unknown_sampling_options_raise(family):
    m = _model(family)
    with pytest.raises(TypeError, match="no sampling option"):
        m.sample(1, generator=seeded(1), colour="red")
    with pytest.raises(TypeError, match="seed"):
        m.sample(1, seed=3)  # the request's seed becomes a generator; the model takes generators


@pytest.mark.parametrize("family", ["vae", "flow", "transformer", "rnn"])
def test_log_prob_is_differentiable(family):
    m = _model(family).train()
    if m.modality == "image":
        x = torch.randint(0, 256, (4, *CONFIGS[family]["shape"])).float().requires_grad_()
        lp = m.log_prob(x, torch.tensor([0, 1, 2, 0])) if family == "vae" else m.log_prob(x)
        lp.sum().backward()
        assert x.grad is not None and float(x.grad.abs().sum()) > 0  # attacks differentiate the input
    else:
        lp = m.log_prob(torch.randint(0, len(m.vocab), (2, 12)))
        lp.sum().backward()
    assert lp.shape[0] in (2, 4)
    assert any(p.grad is not None and float(p.grad.abs().sum()) > 0 for p in m.parameters())


def test_transformer_scores_every_target_of_a_row():
    m = _model("transformer")  # block_size 8
    for L in (9, 13, 17, 20):  # L - 1 a multiple of 8, and not
        tokens = torch.randint(0, len(TEXT), (3, L))
        nll, units = m.eval_nll({"tokens": tokens})
        assert units == 3 * (L - 1)
        assert float(m.log_prob(tokens).sum().detach()) == pytest.approx(-nll, rel=1e-5)
    # The tail window (symbols 4..12) scores targets 9..12 with the block's context before each.
    tokens = torch.randint(0, len(TEXT), (1, 13))
    with torch.no_grad():
        expected = m.log_prob(tokens[:, :9]) + m.log_prob(tokens[:, 4:13]) - m.log_prob(tokens[:, 4:9])
        assert float(m.log_prob(tokens)) == pytest.approx(float(expected), rel=1e-5)


def test_ar_checks_a_prompt_against_its_fitted_order():
    m = _model("ar")
    order = int(m.order)
    assert order >= 2
    with pytest.raises(OptionError, match="at least") as e:
        m.sample(1, prompt=[1.0] * (order - 1))
    assert e.value.field == "prompt"
    m.check_options(prompt=[[1.0] * order, None])  # per-row prompts
    with pytest.raises(OptionError):
        m.check_options(prompt=[[1.0] * order, [1.0]])
