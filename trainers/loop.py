"""The one train_loop_per_worker that trains every family through the GenerativeModel contract.

Per epoch: each worker runs train_step over its Ray Data shard, through the model as the run's
strategy spreads it (trainers/strategies.py: gradients all-reduced under DDP, or the model sharded
or split), then reduce_statistics() sums count-based sufficient statistics, then each worker
scores the validation split, which is not sharded. Rank 0 writes a checkpoint with the whole
model's weights; under a sharding strategy every worker adds its shard of the training state
(torch.distributed.checkpoint), and Ray Train gathers the files into one checkpoint. Restarting
the run (same name) or a failed worker resumes from the last one.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time

import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
from ray.data.collate_fn import NumpyBatchCollateFn

from genray.cluster.progress import Reporter
from genray.models import weights
from genray.models.base import GenerativeModel
from genray.models.catalog import build
from genray.models.errors import ConfigError
from genray.trainers import strategies
from genray.trainers.config import TrainConfig
from genray.trainers.datasets import to_tensors
from genray.trainers.defenses import batch_transform

CKPT_WEIGHTS, CKPT_BEST = "model.safetensors", "best.safetensors"
CKPT_OPTIM, CKPT_STATE = "optimizers.pt", "state.json"
CKPT_SHARDED = "sharded"  # a DCP checkpoint: parameters and optimizer state, one file per worker


class Collate(NumpyBatchCollateFn):
    def __init__(self, meta: dict):
        self.meta = meta

    def __call__(self, batch):
        return to_tensors(self.meta, batch)


def _all_reduce(t: torch.Tensor) -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)


def _sum(*values: float) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64)
    _all_reduce(t)
    return t.tolist()


def restore(checkpoint, model: GenerativeModel, optimizers=(), schedulers=(), best: bool = False,
            par: strategies.Parallel | None = None) -> dict:
    """Load a checkpoint written by this loop into model (and optimizers, schedulers); returns its state:
    the last finished epoch, the metrics history and the best epoch so far. With best, the
    model gets the weights of the epoch with the lowest validation NLL instead of the last. With
    a sharding strategy's `par`, the model and optimizers resume from the sharded state."""
    with checkpoint.as_directory() as d:
        def read(name: str) -> bytes | None:
            path = os.path.join(d, name)
            if not os.path.exists(path):
                return None
            with open(path, "rb") as f:
                return f.read()

        state = json.loads(read(CKPT_STATE))
        sharded = par is not None and par.sharded
        if optimizers and state.get("strategy", "ddp") != (par.name if par else "ddp"):
            raise ConfigError(f"the checkpoint was trained with strategy {state.get('strategy', 'ddp')!r}: resume "
                              "it with that strategy, or start afresh")
        best_weights = read(CKPT_BEST)
        if sharded:
            par.load_sharded(optimizers, os.path.join(d, CKPT_SHARDED))
        else:
            weights.load_bytes(model, best_weights if best and best_weights else read(CKPT_WEIGHTS))
        if optimizers or schedulers:
            states = torch.load(os.path.join(d, CKPT_OPTIM), weights_only=True)  # written by _save below
            for opt, st in zip(optimizers if not sharded else (), states["optimizers"]):
                opt.load_state_dict(st)
            for sched, st in zip(schedulers, states["schedulers"]):
                sched.load_state_dict(st)
        if best_weights:
            state["best_weights"] = best_weights
        return state


def _save(par: strategies.Parallel, model_bytes: bytes | None, optimizers, schedulers, state: dict, d: str) -> None:
    """Rank 0 writes the whole model, the best weights and the run's state; under a sharding
    strategy every worker writes its shard of the training state."""
    if par.sharded:
        par.save_sharded(optimizers, os.path.join(d, CKPT_SHARDED))
    if par.rank:
        return
    with open(os.path.join(d, CKPT_WEIGHTS), "wb") as f:
        f.write(model_bytes)
    if state.get("best_weights"):
        with open(os.path.join(d, CKPT_BEST), "wb") as f:
            f.write(state["best_weights"])
    torch.save({"optimizers": [] if par.sharded else [opt.state_dict() for opt in optimizers],
                "schedulers": [s.state_dict() for s in schedulers]}, os.path.join(d, CKPT_OPTIM))
    with open(os.path.join(d, CKPT_STATE), "w") as f:
        json.dump({k: v for k, v in state.items() if k != "best_weights"}, f)


def _evaluate(par: strategies.Parallel, val, batch_size: int, to_batch, device) -> float | None:
    """Validation NLL per unit over the whole validation split (each worker holds all of it);
    None for a family without a likelihood."""
    if par.model.nll_unit is None:
        return None
    par.model.eval()
    nll, units = 0.0, 0
    with par.eval_scope():
        for batch in val.iter_torch_batches(batch_size=batch_size, collate_fn=to_batch):
            s, u = par.eval_nll({k: v.to(device) for k, v in batch.items()})
            nll, units = nll + s, units + u
    return nll / units if units else math.nan


def measure(model: GenerativeModel, latency_samples: int, seed: int) -> dict:
    """Size of the model, and with latency_samples the wall time per sample of drawing that many
    at once with the family's default options (after one warm-up draw)."""
    out = {"params": sum(p.numel() for p in model.parameters()), "size_bytes": len(weights.to_bytes(model))}
    if latency_samples and model.kind == "generative":
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model.sample(1, generator=torch.Generator().manual_seed(seed))
            t0 = time.perf_counter()
            model.sample(latency_samples, generator=torch.Generator().manual_seed(seed))
            out["latency_ms"] = (time.perf_counter() - t0) * 1000 / latency_samples
        model.train(was_training)
    return out


def _footprint(par: strategies.Parallel, optimizers, node_id: str) -> dict:
    """The most bytes of parameters, gradients and optimizer state any worker holds (measured
    after the first epoch, so gradients and optimizer state exist); for a model-parallel
    strategy, the share of the split layers' parameters a worker holds; the nodes the workers ran on."""
    mem = par.memory(optimizers)
    held, full = par.sharded_layer_bytes()
    t = torch.tensor([mem["param_bytes"], mem["grad_bytes"], mem["optim_bytes"], held], dtype=torch.float64)
    nodes = [node_id]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        nodes = [None] * dist.get_world_size()
        dist.all_gather_object(nodes, node_id)  # Ray node ids: nodes on one machine share an IP
    out = {"rank_param_bytes": int(t[0]), "rank_grad_bytes": int(t[1]), "rank_optim_bytes": int(t[2]),
           "nodes": len(set(nodes))}
    if full:
        out["split_layer_share"] = float(t[3]) / full
    return out


def _quiet_console() -> None:
    """Keep Ray Train's per-report INFO lines in its log files but off the console,
    where the loop prints its own progress."""
    for h in logging.getLogger("ray.train").handlers:
        if type(h) is logging.StreamHandler:
            h.setLevel(logging.WARNING)


def train_loop_per_worker(cfg: dict) -> None:
    """cfg: model (its config), train (TrainConfig as a dict), meta (the data set's meta),
    total_steps (optimizer steps per worker over the run, for the schedule), name, in_memory;
    optionally init_checkpoint (a checkpoint of another run to start from, as a Tune trial
    exploiting another's), latency_samples (time sampling that many after the first epoch) and
    echo (False: no progress lines, as in a sweep, which prints its own)."""
    _quiet_console()
    tc = TrainConfig.from_dict(cfg["train"])
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    device = ray.train.torch.get_device()

    torch.manual_seed(tc.seed)  # the same initial weights on every worker, which strategies split
    model = build(cfg["model"]).to(device)
    torch.manual_seed(tc.seed + rank)
    par = strategies.wrap(model, device, tc)
    optimizers = par.optimizers(model.make_optimizers(tc.optimizer()))
    # A training-time defense (augmentation, adversarial examples) transforms each batch first.
    defend = batch_transform(tc, model, torch.Generator().manual_seed(tc.seed * 1_000_003 + rank), cfg["total_steps"])
    schedulers = tc.schedulers(optimizers, cfg["total_steps"])

    state = {"epoch": -1, "history": [], "strategy": tc.strategy}
    checkpoint = ray.train.get_checkpoint() or cfg.get("init_checkpoint")
    if checkpoint:
        state = restore(checkpoint, model, optimizers, schedulers, par=par)
        # The schedulers' saved state brings back the lr the checkpoint was trained with; this run's
        # config decides it (a PBT trial restores another's checkpoint under a mutated lr).
        for opt, sched in zip(optimizers, schedulers):
            sched.base_lrs = [tc.lr] * len(opt.param_groups)
            for group, lr in zip(opt.param_groups, sched.get_lr()):
                group.update(initial_lr=tc.lr, lr=lr)

    to_batch = Collate(cfg["meta"])
    train_shard = ray.train.get_dataset_shard("train")
    val_split = ray.train.get_dataset_shard("val")
    bs, log_every, epochs = tc.batch_size, tc.log_every, tc.epochs
    tag = cfg.get("name", model.family)
    # With a progress board (genray train / up), rank 0 feeds the driver's bar instead of printing.
    board = cfg.get("progress")
    report = Reporter(board if rank == 0 else None, tag)
    total = cfg["total_steps"]
    per_epoch, world = max(1, total // max(epochs, 1)), ctx.get_world_size()
    if board is not None:
        log_every = 0

    for epoch in range(state["epoch"] + 1, epochs):
        model.train()
        t0, rows, steps, loss_sum, waited = time.perf_counter(), 0, 0, 0.0, 0.0
        batches = iter(train_shard.iter_torch_batches(batch_size=bs, collate_fn=to_batch,
                                                      local_shuffle_buffer_size=4 * bs,
                                                      local_shuffle_seed=tc.seed + epoch))
        if cfg.get("in_memory"):
            # A small shard is pulled whole: Ray Data's streaming machinery then sits idle
            # instead of competing with the training step for the CPU (~15% on 2 cores).
            t_wait = time.perf_counter()
            batches = iter(list(batches))
            waited += time.perf_counter() - t_wait
        while True:
            t_wait = time.perf_counter()
            batch = next(batches, None)
            waited += time.perf_counter() - t_wait
            if batch is None:
                break
            batch = {k: v.to(device) for k, v in batch.items()}
            if defend:  # the optimizer steps so far, restored with the schedule on resume
                batch = defend(batch, schedulers[0].last_epoch)
            rows += next(iter(batch.values())).shape[0]
            out = par.train_step(par.batch(batch), optimizers, max_grad_norm=tc.max_grad_norm)
            for sched in schedulers:
                sched.step()
            steps += 1
            loss_sum += out.get("loss", 0.0)
            report(epoch=epoch + 1, epochs=epochs, step=min(total, epoch * per_epoch + steps), total=total,
                   loss=out.get("loss"), rows_per_s=world * rows / (time.perf_counter() - t0))
            if rank == 0 and log_every and steps % log_every == 0:
                print(f"[{tag}] epoch {epoch + 1}/{epochs} step {steps} "
                      f"loss {out.get('loss', float('nan')):.4f} "
                      f"{rows / (time.perf_counter() - t0):.1f} rows/s/worker", flush=True)
        model.reduce_statistics(_all_reduce)
        train_time = time.perf_counter() - t0
        rows_all, steps_all, loss_all = _sum(rows, steps, loss_sum)
        metrics = {"epoch": epoch + 1, "samples_per_s": rows_all / train_time, "epoch_time_s": train_time,
                   "data_wait_s": waited}
        val_nll = _evaluate(par, val_split, bs, to_batch, device)
        if val_nll is not None:
            # a diverged epoch (NaN) does not erase the best so far
            best = min([v for v in (val_nll, state.get("best_val_nll")) if v is not None and math.isfinite(v)],
                       default=math.nan)
            metrics.update(val_nll=val_nll, nll_unit=model.nll_unit, best_val_nll=best)
        if optimizers:  # count-based families have no training loss
            metrics.update(train_loss=loss_all / max(steps_all, 1), lr=schedulers[0].get_last_lr()[0])
        # The whole model's weights, on rank 0: what the checkpoint keeps and the registry publishes.
        full = par.full_state() if par.sharded else None
        if rank == 0:
            model_bytes = weights.state_to_bytes(full) if par.sharded else weights.to_bytes(model)
        else:
            model_bytes = None
        if "measured" not in state:  # what constraints are put on: fixed by the architecture
            whole = model if rank or not par.sharded else weights.load_bytes(build(cfg["model"]), model_bytes)
            state["measured"] = measure(whole, cfg.get("latency_samples", 0), tc.seed) if rank == 0 else {}
            state["measured"].update(_footprint(par, optimizers, ray.get_runtime_context().get_node_id()))
        metrics.update(state["measured"])
        state = {**state, "epoch": epoch, "history": state["history"] + [metrics]}
        # The epoch with the lowest validation NLL is kept beside the last: the run publishes it
        # (early stopping without cutting the run short, which resuming relies on).
        if val_nll is not None and math.isfinite(val_nll) and val_nll < state.get("best_val_nll", math.inf):
            state.update(best_val_nll=val_nll, best_epoch=epoch + 1, best_weights=model_bytes)
        report(force=True, epoch=epoch + 1, epochs=epochs, step=min(total, (epoch + 1) * per_epoch), total=total,
               val_nll=val_nll, rows_per_s=metrics["samples_per_s"], loss=metrics.get("train_loss"))
        if rank == 0 and cfg.get("echo", True) and board is None:
            print(f"[{tag}] epoch {epoch + 1}/{epochs} " + " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()), flush=True)
        with tempfile.TemporaryDirectory() as d:
            _save(par, model_bytes, optimizers, schedulers, state, d)
            # Ray Train gathers every reporting worker's files into the one checkpoint.
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d)
                             if rank == 0 or par.sharded else None)
