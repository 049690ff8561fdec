"""Training strategies on Ray Train (2 workers, gloo): every strategy follows DDP's trajectory,
publishes one consolidated version that samples, and a sharded run resumes from its DCP checkpoint.
Hybrid parallelism and a two-node run that survives a killed worker: tests/test_benchmarks.py's
parallel smoke."""
import pytest
import torch

from genray.cluster.registry import Registry
from genray.cluster.storage import Storage
from genray.models.base import clip_grad_norm
from genray.models.catalog import build
from genray.models.errors import ConfigError
from genray.trainers.run import TrainSpec, train, train_bundle

# 2 blocks of 2 heads: a block per pipeline stage and a head per tensor-parallel worker. 160 rows
# of 257 characters, 4 per worker per step: 20 steps, windows of 64 with no ragged tail.
MODEL = {"n_layer": 2, "n_embd": 32, "n_head": 2, "block_size": 64}


def _spec(strategy: str, name: str, epochs: int = 1, workers: int = 2, **train_settings) -> TrainSpec:
    return TrainSpec("transformer", name=name, workers=workers, epochs=epochs, batch_size=4, limit=160,
                     model=MODEL, cpus_per_worker=2 / workers,
                     train={"strategy": strategy, "log_every": 0, "microbatches": 2, **train_settings})


@pytest.fixture(scope="module")
def storage(tmp_path_factory) -> Storage:
    """A registry of this module's own: the served test app serves every model in the session's."""
    return Storage(str(tmp_path_factory.mktemp("genray-parallel")))


@pytest.fixture(scope="module")
def runs(ray_cluster, storage):
    """ddp, tensor and pipeline one after another in one Train run (a bundle); fsdp in a run of its own,
    which the resume test below continues."""
    # The pipeline trains under 1F1B here (and evaluates under GPipe); the benchmark trains under GPipe.
    bundle = train_bundle([_spec("ddp", "par-ddp"), _spec("tensor", "par-tensor"),
                           _spec("pipeline", "par-pipeline", pipeline_schedule="1f1b")], storage, "strategies")
    return {"fsdp": train(_spec("fsdp", "par-fsdp"), storage),
            **{name.removeprefix("par-"): rec for name, rec in bundle.items()}}


def test_strategies_follow_the_same_trajectory(runs):
    ref = runs["ddp"].metrics
    assert ref["history"][0]["epoch"] == 1
    for strategy in ("fsdp", "tensor", "pipeline"):
        m = runs[strategy].metrics
        assert m["training"]["strategy"] == strategy
        # 20 steps of the same global batches from the same weights, in fp32
        assert m["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-4), strategy
        assert m["val_nll"] == pytest.approx(ref["val_nll"], rel=1e-4), strategy


def test_each_strategy_publishes_one_whole_model_that_samples(runs, storage):
    reg = Registry(storage)
    for strategy, rec in runs.items():
        model, _ = reg.load(rec.ref)
        assert sum(p.numel() for p in model.parameters()) == runs["ddp"].metrics["params"]
        text = model.sample(2, prompt="ROMEO:", max_tokens=16, generator=None)
        assert all(t.startswith("ROMEO:") and len(t) == 22 for t in text), (strategy, text)


def test_sharding_strategies_hold_less_per_worker(runs):
    ddp, fsdp = runs["ddp"].metrics, runs["fsdp"].metrics
    for kind in ("param", "grad", "optim"):
        assert fsdp[f"rank_{kind}_bytes"] <= 0.55 * ddp[f"rank_{kind}_bytes"], kind
    assert runs["tensor"].metrics["split_layer_share"] <= 0.55
    assert runs["pipeline"].metrics["rank_param_bytes"] < ddp["rank_param_bytes"]


def test_a_sharded_run_resumes_from_its_dcp_checkpoint(runs, storage):
    again = train(_spec("fsdp", "par-fsdp", epochs=2), storage)
    h1, h2 = runs["fsdp"].metrics["history"], again.metrics["history"]
    assert len(h2) == 2 and h2[0] == h1[0]  # epoch 1 restored, not retrained
    assert h2[1]["val_nll"] < h2[0]["val_nll"]
    with pytest.raises(ConfigError, match="trained with strategy 'fsdp'.*--fresh"):
        train(_spec("ddp", "par-fsdp", epochs=3), storage)


@pytest.mark.parametrize("family, strategy, match", [
    ("markov", "fsdp", "markov models train with strategy ddp, not 'fsdp'"),
    ("rnn", "tensor", "rnn models train with strategy ddp or fsdp, not 'tensor'"),
    ("transformer", "pipeline", "at least one block per worker"),
])
def test_unsupported_strategies_are_refused_by_name(storage, family, strategy, match):
    spec = TrainSpec(family, workers=4, train={"strategy": strategy}, model={"n_layer": 2} if family == "transformer"
                     else {})
    with pytest.raises(ConfigError, match=match):
        train(spec, storage)


def test_weights_saved_with_a_fused_attention_projection_still_load():
    torch.manual_seed(0)
    model = build({"family": "transformer", "vocab": "abcdefgh", "n_layer": 2, "n_embd": 16, "n_head": 2})
    fused = {}
    for k, v in model.state_dict().items():
        prefix, _, rest = k.rpartition(".attn.")
        if rest[:2] in ("q.", "k.", "v."):
            kind = rest[2:]
            fused[f"{prefix}.attn.c_attn.{kind}"] = torch.cat(
                [model.state_dict()[f"{prefix}.attn.{p}.{kind}"] for p in "qkv"])
        else:
            fused[k] = v
    assert any("c_attn" in k for k in fused) and not any(".attn.q." in k for k in fused)
    again = build(model.config())
    again.load_state_dict(fused)
    x = torch.randint(0, 8, (2, 12))
    assert torch.equal(again.logits(x)[0], model.logits(x)[0])


def test_clipping_matches_torch_and_scales_only_above_the_bound():
    torch.manual_seed(0)
    a, b = (torch.nn.Parameter(torch.randn(5, 3)) for _ in range(2))
    for p in (a, b):
        p.grad = torch.randn_like(p) * 10
    twins = [torch.nn.Parameter(p.detach().clone()) for p in (a, b)]
    for t, p in zip(twins, (a, b)):
        t.grad = p.grad.clone()
    ref = torch.nn.utils.clip_grad_norm_(twins, 1.0)  # the norm before clipping
    total = clip_grad_norm([a, b], 1.0)
    assert float(total) == pytest.approx(float(ref), rel=1e-6)
    assert float(torch.cat([a.grad.flatten(), b.grad.flatten()]).norm()) == pytest.approx(1.0, rel=1e-4)
    assert torch.allclose(a.grad, twins[0].grad) and torch.allclose(b.grad, twins[1].grad)
    before = a.grad.clone()
    clip_grad_norm([a], 100.0)  # under the bound: untouched
    assert torch.equal(a.grad, before)
