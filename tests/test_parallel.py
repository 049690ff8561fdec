"""Training strategies on Ray Train (2 workers, gloo): every strategy follows DDP's trajectory,
publishes one consolidated version that samples, and a sharded run resumes from its DCP checkpoint."""
import pytest

from genray.cluster.registry import Registry
from genray.models.errors import ConfigError
from genray.trainers.run import TrainSpec, train

# 2 blocks of 2 heads: a block per pipeline stage and a head per tensor-parallel worker. 160 rows
# of 257 characters, 4 per worker per step: 20 steps, windows of 64 with no ragged tail.
MODEL = {"n_layer": 2, "n_embd": 32, "n_head": 2, "block_size": 64}


def _spec(strategy: str, name: str, epochs: int = 1, workers: int = 2, **train_settings) -> TrainSpec:
    return TrainSpec("transformer", name=name, workers=workers, epochs=epochs, batch_size=4, limit=160,
                     model=MODEL, cpus_per_worker=2 / workers,
                     train={"strategy": strategy, "log_every": 0, "microbatches": 2, **train_settings})


@pytest.fixture(scope="module")
def runs(ray_cluster, storage):
    return {s: train(_spec(s, f"par-{s}"), storage) for s in ("ddp", "fsdp", "tensor", "pipeline")}


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


def test_hybrid_trains_on_a_two_by_two_mesh(ray_cluster, storage):
    rec = train(_spec("hybrid", "par-hybrid", workers=4), storage)
    m = rec.metrics
    assert m["workers"] == 4 and m["training"]["strategy"] == "hybrid"
    assert m["val_nll"] < m["history"][0]["val_nll"] or m["epochs"] == 1
    assert m["split_layer_share"] <= 0.3  # tensor-split over 2, then sharded over 2


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
