"""Training strategies on Ray Train (2 workers, gloo): every strategy follows DDP's trajectory,
publishes one consolidated version that samples, and a sharded run resumes from its DCP checkpoint."""
import pytest
import torch

from genray.cluster.registry import Registry
from genray.cluster.storage import Storage
from genray.models.base import clip_grad_norm
from genray.models.catalog import build
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
def storage(tmp_path_factory) -> Storage:
    """A registry of this module's own: the served test app serves every model in the session's."""
    return Storage(str(tmp_path_factory.mktemp("genray-parallel")))


@pytest.fixture(scope="module")
def runs(ray_cluster, storage):
    # The pipeline trains under 1F1B here (and evaluates under GPipe); the benchmark trains under GPipe.
    extra = {"pipeline": {"pipeline_schedule": "1f1b"}}
    return {s: train(_spec(s, f"par-{s}", **extra.get(s, {})), storage) for s in ("ddp", "fsdp", "tensor", "pipeline")}


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


def test_a_two_node_run_survives_a_killed_worker(storage, tmp_path):
    """A real 2-node cluster (a head and a worker raylet, 2 CPUs each) beside the session's: the
    workers spread over both nodes, a training worker on the second node is SIGKILLed after
    the first checkpoint, and the run resumes from it, finishes and publishes."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cluster = subprocess.Popen([sys.executable, "-m", "genray.cluster.local", "--nodes", "2", "--cpus", "2"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        info = json.loads(cluster.stdout.readline())
        run = subprocess.Popen(
            [sys.executable, "-m", "genray", "train", "transformer", "--name", "two-node", "--address",
             info["address"], "--storage", storage.uri, "--spread", "--workers", "2", "--epochs", "4",
             "--limit", "256", "--batch-size", "4", "--set", "n_layer=1", "--set", "n_embd=32",
             "--set", "n_head=2", "--set", "block_size=64", "--max-failures", "1", "--precision", "bf16"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        run_dir, killed = storage.path("runs", "two-node"), None
        deadline = time.time() + 300
        while run.poll() is None and killed is None and time.time() < deadline:
            if storage.exists(run_dir) and any(n.startswith("checkpoint_2") for n in storage.listdir(run_dir)):
                raylet = psutil.Process(info["nodes"][1]["raylet_pid"])
                workers = [p for p in raylet.children(recursive=True) if "RayTrainWorker" in " ".join(p.cmdline())]
                if workers:
                    killed = workers[0].pid
                    os.kill(killed, signal.SIGKILL)
            time.sleep(0.2)
        out, _ = run.communicate(timeout=300)
        assert run.returncode == 0, out[-3000:]
        assert killed is not None, "training finished before a worker could be killed"
    finally:
        cluster.communicate("quit\n", timeout=60)
    m = Registry(storage).record("two-node").metrics
    assert m["nodes"] == 2  # SPREAD: one worker on each node
    assert m["training"]["precision"] == "bf16"
    assert [h["epoch"] for h in m["history"]] == [1, 2, 3, 4]
    assert m["history"][-1]["val_nll"] < m["history"][0]["val_nll"]


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
