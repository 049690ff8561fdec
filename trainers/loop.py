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
from dataclasses import dataclass

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


@dataclass(frozen=True)
class LoopConfig:
    """Everything train_loop_per_worker reads. trainers/run.build_trainer makes it and hands it to
    Ray Train as train_loop_config={"loop": cfg} (Ray Train wants a dict)."""
    model: dict  # the family's architecture settings, as catalog.build takes them
    train: TrainConfig
    meta: dict  # the prepared data set's meta: how to_tensors turns rows into a batch
    total_steps: int  # optimizer steps per worker over the whole run: the length of the lr schedule and defense ramp
    name: str | None = None  # the run's, in progress lines (None: the family's)
    in_memory: bool = False  # the shard is small: pull it whole each epoch instead of streaming it
    init_checkpoint: ray.train.Checkpoint | None = None  # another run's to start from (a PBT trial exploiting one)
    latency_samples: int = 0  # after the first epoch, time sampling this many at once (0: no timing)
    echo: bool = True  # False: no per-epoch lines, as in a sweep, which prints its own
    # A cluster.progress.ProgressBoard actor: rank 0 feeds the driver's bar instead of printing.
    progress: ray.actor.ActorHandle | None = None
    # In a run that trains several models one after another (trainers/run.train_bundle): this one's
    # name, which tags its data sets ("train.<part>"), reports and checkpoints.
    part: str | None = None

    def data_key(self, split: str) -> str:
        return f"{split}.{self.part}" if self.part else split


@dataclass(frozen=True)
class _EpochTotals:
    """One epoch of training: rows, steps and loss summed over the workers; times are this worker's."""
    rows: float
    steps: float
    loss_sum: float
    time_s: float  # training time, statistics' reduction included
    wait_s: float  # of which spent waiting for Ray Data's batches


class _Worker:
    """One worker's part of the run: __init__ sets it up (or resumes it from a checkpoint),
    train_epoch streams the shard through train_step, end_epoch evaluates, checkpoints and reports."""

    def __init__(self, cfg: LoopConfig, checkpoint: ray.train.Checkpoint | None):
        self.cfg, self.tc = cfg, cfg.train
        self.started = time.perf_counter()
        ctx = ray.train.get_context()
        self.rank, self.world = ctx.get_world_rank(), ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self._build()
        self.state = self._resume(checkpoint or cfg.init_checkpoint)
        self._open_data()
        self._open_progress()

    # -- setup

    def _build(self) -> None:
        """The model as the strategy spreads it, its optimizers, schedulers and defense."""
        tc, total = self.tc, self.cfg.total_steps
        torch.manual_seed(tc.seed)  # the same initial weights on every worker, which strategies split
        self.model = build(self.cfg.model).to(self.device)
        torch.manual_seed(tc.seed + self.rank)
        self.par = strategies.wrap(self.model, self.device, tc)
        self.optimizers = self.par.optimizers(self.model.make_optimizers(tc.optimizer()))
        # A training-time defense (augmentation, adversarial examples) transforms each batch first.
        self.defend = batch_transform(tc, self.model, torch.Generator().manual_seed(tc.seed * 1_000_003 + self.rank),
                                      total)
        self.schedulers = tc.schedulers(self.optimizers, total)

    def _resume(self, checkpoint: ray.train.Checkpoint | None) -> dict:
        """The run's state: restored from the checkpoint, else a fresh one."""
        if not checkpoint:
            return {"epoch": -1, "history": [], "strategy": self.tc.strategy, "part": self.cfg.part}
        state = restore(checkpoint, self.model, self.optimizers, self.schedulers, par=self.par)
        # The schedulers' saved state brings back the lr the checkpoint was trained with; this run's
        # config decides it (a PBT trial restores another's checkpoint under a mutated lr).
        lr = self.tc.lr
        for opt, sched in zip(self.optimizers, self.schedulers):
            sched.base_lrs = [lr] * len(opt.param_groups)
            for group, group_lr in zip(opt.param_groups, sched.get_lr()):
                group.update(initial_lr=lr, lr=group_lr)
        return state

    def _open_data(self) -> None:
        self.to_batch = Collate(self.cfg.meta)
        self.train_shard = ray.train.get_dataset_shard(self.cfg.data_key("train"))
        # not sharded: every worker scores all of it
        self.val_split = ray.train.get_dataset_shard(self.cfg.data_key("val"))

    def _open_progress(self) -> None:
        """Progress lines every log_every steps, or with a progress board (genray train / up),
        updates of the driver's bar from rank 0 instead."""
        board = self.cfg.progress
        self.tag = self.cfg.name or self.model.family
        self.report = Reporter(board if self.rank == 0 else None, self.tag)
        self.log_every = 0 if board is not None else self.tc.log_every
        self.per_epoch = max(1, self.cfg.total_steps // max(self.tc.epochs, 1))  # steps, for the bar

    @property
    def first_epoch(self) -> int:
        """0, or the one after the checkpoint's."""
        return self.state["epoch"] + 1

    # -- one epoch of training

    def train_epoch(self, epoch: int) -> _EpochTotals:
        """Streams this worker's shard through train_step once, then sums the statistics and totals
        over the workers."""
        self.model.train()
        t0, rows, steps, loss_sum = time.perf_counter(), 0, 0, 0.0
        batches, waited = self._batches(epoch)
        while True:
            t_wait = time.perf_counter()
            batch = next(batches, None)
            waited += time.perf_counter() - t_wait
            if batch is None:
                break
            n, out = self._step(batch)
            rows, steps, loss_sum = rows + n, steps + 1, loss_sum + out.get("loss", 0.0)
            self._step_progress(epoch, steps, rows, time.perf_counter() - t0, out.get("loss"))
        self.model.reduce_statistics(_all_reduce)
        time_s = time.perf_counter() - t0
        rows_all, steps_all, loss_all = _sum(rows, steps, loss_sum)
        return _EpochTotals(rows_all, steps_all, loss_all, time_s, waited)

    def _batches(self, epoch: int):
        """The epoch's batches ({key: [B, ...] tensor}, shuffled by seed and epoch) and the seconds
        spent pulling them up front."""
        bs = self.tc.batch_size
        batches = iter(self.train_shard.iter_torch_batches(batch_size=bs, collate_fn=self.to_batch,
                                                           local_shuffle_buffer_size=4 * bs,
                                                           local_shuffle_seed=self.tc.seed + epoch))
        if not self.cfg.in_memory:
            return batches, 0.0
        # A small shard is pulled whole: Ray Data's streaming machinery then sits idle
        # instead of competing with the training step for the CPU (~15% on 2 cores).
        t_wait = time.perf_counter()
        batches = iter(list(batches))
        return batches, time.perf_counter() - t_wait

    def _step(self, batch: dict) -> tuple[int, dict]:
        """One optimizer step (and schedule step) on a batch; its rows and train_step's output."""
        batch = {k: v.to(self.device) for k, v in batch.items()}
        if self.defend:  # the optimizer steps so far, restored with the schedule on resume
            batch = self.defend(batch, self.schedulers[0].last_epoch)
        rows = next(iter(batch.values())).shape[0]  # every value is [B, ...]
        out = self.par.train_step(self.par.batch(batch), self.optimizers, max_grad_norm=self.tc.max_grad_norm)
        for sched in self.schedulers:
            sched.step()
        return rows, out

    def _step_progress(self, epoch: int, steps: int, rows: int, elapsed: float, loss: float | None) -> None:
        epochs, total = self.tc.epochs, self.cfg.total_steps
        self.report(epoch=epoch + 1, epochs=epochs, step=min(total, epoch * self.per_epoch + steps), total=total,
                    loss=loss, rows_per_s=self.world * rows / elapsed)
        if self.rank == 0 and self.log_every and steps % self.log_every == 0:
            print(f"[{self.tag}] epoch {epoch + 1}/{epochs} step {steps} "
                  f"loss {loss if loss is not None else float('nan'):.4f} "
                  f"{rows / elapsed:.1f} rows/s/worker", flush=True)

    # -- the epoch's end

    def end_epoch(self, epoch: int, done: _EpochTotals) -> None:
        """Scores the validation split, records the epoch in the run's state, reports it with a checkpoint."""
        metrics = {"epoch": epoch + 1, "samples_per_s": done.rows / done.time_s, "epoch_time_s": done.time_s,
                   "data_wait_s": done.wait_s}
        if self.cfg.part:  # what the bundle's publisher reads: whose epoch, and how long the part has run
            metrics.update(part=self.cfg.part, part_s=time.perf_counter() - self.started)
        val_nll = self._validate(metrics)
        if self.optimizers:  # count-based families have no training loss
            metrics.update(train_loss=done.loss_sum / max(done.steps, 1), lr=self.schedulers[0].get_last_lr()[0])
        model_bytes = self._model_bytes()
        metrics.update(self._measured(model_bytes))
        self.state = {**self.state, "epoch": epoch, "history": self.state["history"] + [metrics]}
        # The epoch with the lowest validation NLL is kept beside the last: the run publishes it
        # (early stopping without cutting the run short, which resuming relies on).
        if val_nll is not None and math.isfinite(val_nll) and val_nll < self.state.get("best_val_nll", math.inf):
            self.state.update(best_val_nll=val_nll, best_epoch=epoch + 1, best_weights=model_bytes)
        self._epoch_progress(epoch, metrics, val_nll)
        self._checkpoint(metrics, model_bytes)

    def _validate(self, metrics: dict) -> float | None:
        """The validation NLL (None without a likelihood), added to metrics with the best so far."""
        val_nll = _evaluate(self.par, self.val_split, self.tc.batch_size, self.to_batch, self.device)
        if val_nll is not None:
            # a diverged epoch (NaN) does not erase the best so far
            best = min([v for v in (val_nll, self.state.get("best_val_nll")) if v is not None and math.isfinite(v)],
                       default=math.nan)
            metrics.update(val_nll=val_nll, nll_unit=self.model.nll_unit, best_val_nll=best)
        return val_nll

    def _model_bytes(self) -> bytes | None:
        """The whole model's weights, on rank 0: what the checkpoint keeps and the registry publishes."""
        full = self.par.full_state() if self.par.sharded else None  # collective: every worker takes part
        if self.rank:
            return None
        return weights.state_to_bytes(full) if self.par.sharded else weights.to_bytes(self.model)

    def _measured(self, model_bytes: bytes | None) -> dict:
        """What constraints are put on, fixed by the architecture: measured once, then kept in the state."""
        if "measured" not in self.state:
            par = self.par
            whole = (self.model if self.rank or not par.sharded
                     else weights.load_bytes(build(self.cfg.model), model_bytes))
            measured = measure(whole, self.cfg.latency_samples, self.tc.seed) if self.rank == 0 else {}
            measured.update(_footprint(par, self.optimizers, ray.get_runtime_context().get_node_id()))
            self.state["measured"] = measured
        return self.state["measured"]

    def _epoch_progress(self, epoch: int, metrics: dict, val_nll: float | None) -> None:
        epochs, total = self.tc.epochs, self.cfg.total_steps
        self.report(force=True, epoch=epoch + 1, epochs=epochs, step=min(total, (epoch + 1) * self.per_epoch),
                    total=total, val_nll=val_nll, rows_per_s=metrics["samples_per_s"],
                    loss=metrics.get("train_loss"))
        if self.rank == 0 and self.cfg.echo and self.cfg.progress is None:
            print(f"[{self.tag}] epoch {epoch + 1}/{epochs} " + " ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()), flush=True)

    def _checkpoint(self, metrics: dict, model_bytes: bytes | None) -> None:
        with tempfile.TemporaryDirectory() as d:
            _save(self.par, model_bytes, self.optimizers, self.schedulers, self.state, d)
            # Ray Train gathers every reporting worker's files into the one checkpoint.
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d)
                             if self.rank == 0 or self.par.sharded else None)


def _part_of(checkpoint: ray.train.Checkpoint) -> str | None:
    with checkpoint.as_directory() as d, open(os.path.join(d, CKPT_STATE)) as f:
        return json.load(f).get("part")


def train_loop_per_worker(config: dict) -> None:
    """Ray Train's entry point on every worker. config["loop"] is the run's LoopConfig, or a list of
    them that the run trains one after another on the same workers (a bundle, which resumes at the
    part its last checkpoint was written by)."""
    _quiet_console()
    parts = config["loop"] if isinstance(config["loop"], list) else [config["loop"]]
    checkpoint = ray.train.get_checkpoint()
    if checkpoint and len(parts) > 1:
        parts = parts[[p.part for p in parts].index(_part_of(checkpoint)):]
    for cfg in parts:
        worker = _Worker(cfg, checkpoint)
        checkpoint = None  # only the first part resumes
        for epoch in range(worker.first_epoch, worker.tc.epochs):
            worker.end_epoch(epoch, worker.train_epoch(epoch))
