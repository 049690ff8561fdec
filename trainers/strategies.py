"""How the one training loop spreads a model over its workers: one object per worker that wraps
the model for a strategy, from the family's parallel_plan(), so the loop never asks which.

ddp       every worker holds the whole model; gradients are all-reduced (Ray Train's prepare_model),
          or a count-based family sums its counts at the epoch's end
fsdp      FSDP2 (fully_shard on a 1-D DeviceMesh): parameters, gradients and optimizer state
          sharded; each block's parameters gathered for its forward and backward only
tensor    Megatron tensor parallelism (torch.distributed.tensor.parallel) on every worker: the
          plan's column-split layers feed its row-split ones, one all-reduce per pair
pipeline  the blocks cut into consecutive stages, one per worker; microbatches through a GPipe
          or 1F1B schedule (torch.distributed.pipelining)
hybrid    a 2-D mesh (dp x tp): tensor parallel within groups of tp workers, FSDP across them

Workers of one model-parallel group (tensor, pipeline, hybrid's tp) need the same batch: each reads
its own Ray Data shard as under ddp, and the group concatenates them, so every strategy takes
the same global batch at each step and, in fp32, follows the same trajectory.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
import torch.distributed as dist
from torch import nn

from genray.models.base import TrainableModel
from genray.models.errors import ConfigError
from genray.trainers.config import TrainConfig

SCHEDULES = {"gpipe": "ScheduleGPipe", "1f1b": "Schedule1F1B"}
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def check(model: TrainableModel, tc: TrainConfig, workers: int) -> None:
    """A clear error for settings the family or the worker count cannot run (before any worker starts)."""
    model_cls, strategy, tp = type(model), tc.strategy, tc.tensor_parallel
    n_blocks = len(_blocks(model)) if model.parallel_plan().blocks else None
    if strategy not in model_cls.strategies:
        raise ConfigError(f"{model_cls.family} models train with strategy {' or '.join(model_cls.strategies)}, "
                          f"not {strategy!r}")
    if strategy == "hybrid" and (tp < 2 or workers % tp or workers == tp):
        raise ConfigError(f"hybrid needs workers = dp x tp with dp, tp >= 2 (tp={tp}); got {workers} workers")
    if strategy == "pipeline" and n_blocks is not None and n_blocks < workers:
        raise ConfigError(f"pipeline needs at least one block per worker: {n_blocks} blocks, {workers} workers")
    split = {"tensor": workers, "hybrid": tp}.get(strategy)
    heads = model.config().get("n_head")
    if split and heads and heads % split:
        raise ConfigError(f"tensor parallelism splits the {heads} attention heads over {split} workers: "
                          "the workers must divide them")
    if tc.precision == "fp16" and (model_cls.train_step is not TrainableModel.train_step or strategy == "pipeline"):
        raise ConfigError(f"fp16 needs the loss scaled, which {model_cls.family} models under {strategy} do not: "
                          "use bf16 or fp32")
    if tc.defense != "none" and strategy != "ddp":
        raise ConfigError(f"training-time defenses attack the whole model: use strategy ddp, not {strategy!r}")


def _local(t: torch.Tensor) -> torch.Tensor:
    return t.to_local() if hasattr(t, "to_local") else t


def _nbytes(tensors) -> int:
    return sum(_local(t).numel() * t.element_size() for t in tensors if t is not None and t.device.type != "meta")


class Parallel:
    """The model as one worker trains it under a strategy. Subclasses override what differs."""
    name = ""
    sharded = False  # state that only all workers together hold (saved with DCP)

    def __init__(self, model: TrainableModel, device: torch.device, precision: str = "fp32"):
        self.model, self.device = model, device
        self.rank, self.world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
        dtype = PRECISIONS[precision]
        self.autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext
        # fp16's narrow range needs the loss scaled; bf16 keeps fp32's exponent and does not.
        self.scaler = torch.amp.GradScaler(device.type) if dtype is torch.float16 else None
        self.group: dist.ProcessGroup | None = None  # the model-parallel group sharing a batch
        self.forward: Callable = model

    # ---- per step -------------------------------------------------------------------
    def batch(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch this worker trains on: its own, or its model-parallel group's, concatenated."""
        if self.group is None or dist.get_world_size(self.group) == 1:
            return batch
        out = {}
        for k, v in batch.items():
            parts = [torch.empty_like(v) for _ in range(dist.get_world_size(self.group))]
            dist.all_gather(parts, v.contiguous(), group=self.group)
            out[k] = torch.cat(parts)
        return out

    def optimizers(self, optimizers: list[torch.optim.Optimizer]) -> list[torch.optim.Optimizer]:
        return optimizers

    def train_step(self, batch, optimizers, max_grad_norm=None) -> dict[str, float]:
        kwargs = {"scaler": self.scaler} if self.scaler else {}
        return self.model.train_step(batch, optimizers, self._autocast(self.forward), max_grad_norm=max_grad_norm,
                                     **kwargs)

    def _autocast(self, fn: Callable) -> Callable:
        def run(*args, **kwargs):
            with self.autocast():
                return fn(*args, **kwargs)
        return run

    @torch.no_grad()
    def eval_nll(self, batch) -> tuple[float, int]:
        return self.model.eval_nll(batch)

    def eval_scope(self):
        """Around a validation pass (FSDP gathers the root's parameters for it)."""
        return contextlib.nullcontext()

    # ---- state (sharded strategies: the loop gathers the whole model with full_state) ----------
    def full_state(self) -> dict[str, torch.Tensor] | None:
        """The whole model's state dict on CPU, on rank 0 (None elsewhere). Every worker calls it."""
        raise NotImplementedError

    def save_sharded(self, optimizers, path: str) -> None:
        raise NotImplementedError

    def load_sharded(self, optimizers, path: str) -> None:
        raise NotImplementedError

    def memory(self, optimizers) -> dict[str, int]:
        """Bytes this worker holds of parameters, gradients and optimizer state."""
        params = list({id(p): p for p in self.model.parameters()}.values())
        state = [t for opt in optimizers for st in opt.state.values() for t in st.values()
                 if isinstance(t, torch.Tensor) and t.dim() > 0]
        return {"param_bytes": _nbytes(params), "grad_bytes": _nbytes(p.grad for p in params),
                "optim_bytes": _nbytes(state)}

    def sharded_layer_bytes(self) -> tuple[int, int]:
        """(bytes held here, bytes in full) of the parameters a model-parallel strategy splits."""
        return 0, 0


class DDP(Parallel):
    name = "ddp"

    def __init__(self, model, device, precision="fp32"):
        super().__init__(model, device, precision)
        if any(p.requires_grad for p in model.parameters()) and self.world > 1:
            import ray.train.torch

            self.forward = ray.train.torch.prepare_model(
                model, parallel_strategy_kwargs=dict(model.ddp_options) or None)


class DTensorParallel(Parallel):
    """Strategies whose parameters are DTensors (fsdp, tensor, hybrid): their state dicts and
    DCP checkpoints come from torch.distributed.checkpoint's state-dict API."""
    sharded = True

    def full_state(self):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        state = get_model_state_dict(self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        return state if self.rank == 0 else None

    def save_sharded(self, optimizers, path):
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_sd, optim_sd = get_state_dict(self.model, optimizers)
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=path)

    def load_sharded(self, optimizers, path):
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        model_sd, optim_sd = get_state_dict(self.model, optimizers)
        state = {"model": model_sd, "optim": optim_sd}
        dcp.load(state, checkpoint_id=path)
        set_state_dict(self.model, optimizers, model_state_dict=state["model"], optim_state_dict=state["optim"])

    def sharded_layer_bytes(self):
        held = full = 0
        for p in self.model.parameters():
            if hasattr(p, "to_local") and any(pl.is_shard() for pl in p.placements):
                held += _local(p).numel() * p.element_size()
                full += p.numel() * p.element_size()
        return held, full


def _blocks(model: TrainableModel) -> nn.ModuleList:
    plan = model.parallel_plan()
    return getattr(model, plan.blocks) if plan.blocks else nn.ModuleList()


def _shard(model: TrainableModel, mesh) -> None:
    from torch.distributed.fsdp import fully_shard

    for block in _blocks(model):
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)


def _tensor_parallel(model: TrainableModel, mesh) -> None:
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    styles = {"colwise": ColwiseParallel, "rowwise": RowwiseParallel}
    plan = {name: styles[style]() for name, style in model.parallel_plan().tensor.items()}
    for block in _blocks(model):
        parallelize_module(block, mesh, plan)


class FSDP(DTensorParallel):
    name = "fsdp"

    def __init__(self, model, device, precision="fp32"):
        from torch.distributed.device_mesh import init_device_mesh

        super().__init__(model, device, precision)
        _shard(model, init_device_mesh(device.type, (self.world,)))

    def eval_scope(self):
        @contextlib.contextmanager
        def gathered():
            # Validation calls the model's own methods, not its forward, so FSDP's hooks do not
            # gather the root's parameters (embeddings, head) for it; the blocks' hooks still run.
            self.model.unshard()
            try:
                yield
            finally:
                self.model.reshard()
        return gathered()


class Tensor(DTensorParallel):
    name = "tensor"

    def __init__(self, model, device, precision="fp32"):
        from torch.distributed.device_mesh import init_device_mesh

        super().__init__(model, device, precision)
        _tensor_parallel(model, init_device_mesh(device.type, (self.world,)))
        self.group = dist.group.WORLD


class Hybrid(DTensorParallel):
    name = "hybrid"

    def __init__(self, model, device, precision="fp32", tp: int = 2):
        from torch.distributed.device_mesh import init_device_mesh

        super().__init__(model, device, precision)
        mesh = init_device_mesh(device.type, (self.world // tp, tp), mesh_dim_names=("dp", "tp"))
        _tensor_parallel(model, mesh["tp"])
        _shard(model, mesh["dp"])
        self.group = mesh["tp"].get_group()

    eval_scope = FSDP.eval_scope


class _Stage(nn.Module):
    """A pipeline stage: the model's modules it holds, registered under their names in the
    model, so its state dict's keys are the model's."""
    def __init__(self, model: TrainableModel, lo: int, hi: int, first: bool, last: bool):
        super().__init__()
        plan = model.parallel_plan()
        self.__dict__["model"] = model  # not a submodule: the stage holds only its part
        self.first, self.last = first, last
        for name in (plan.first if first else ()) + (plan.last if last else ()):
            self.add_module(name, getattr(model, name))
        self.add_module(plan.blocks, nn.ModuleDict({str(i): _blocks(model)[i] for i in range(lo, hi)}))
        self.__dict__["order"] = list(getattr(self, plan.blocks).values())

    def forward(self, x):
        return self.__dict__["model"].stage_forward(x, self.__dict__["order"], self.first, self.last)


class Pipeline(Parallel):
    """Each worker holds one stage; the parameters of the others are dropped (left on the meta
    device). A parameter two stages hold (tied input and output embeddings) gets the sum of both
    stages' gradients, as it would in one model."""
    name, sharded = "pipeline", True

    def __init__(self, model, device, precision="fp32", microbatches: int = 4, schedule: str = "gpipe"):
        super().__init__(model, device, precision)
        n = len(_blocks(model))
        bounds = [round(i * n / self.world) for i in range(self.world + 1)]
        first, last = self.rank == 0, self.rank == self.world - 1
        stage = _Stage(model, bounds[self.rank], bounds[self.rank + 1], first, last)
        self.stage, self.microbatches, self.schedule = stage, microbatches, schedule
        self.owned = {id(p) for p in stage.parameters()}
        self.full_bytes = _nbytes({id(p): p for p in model.parameters()}.values())
        # A tensor that both end stages use (tied input and output embeddings).
        plan, roots = model.parallel_plan(), {}
        for name, p in model.named_parameters(remove_duplicate=False):
            roots.setdefault(id(p), set()).add(name.split(".")[0])
        tied = {i for i, r in roots.items() if r & set(plan.first) and r & set(plan.last)}
        self.tied = [p for p in stage.parameters() if id(p) in tied] if self.world > 1 else []
        self.tie_group = dist.new_group([0, self.world - 1]) if self.world > 2 else dist.group.WORLD
        for module in model.modules():
            for name, p in list(module._parameters.items()):
                if p is not None and id(p) not in self.owned:
                    module._parameters[name] = nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad)
        self.group = dist.group.WORLD
        self._schedules: dict = {}

    def optimizers(self, optimizers):
        for opt in optimizers:  # before any state exists: only this stage's parameters
            for group in opt.param_groups:
                group["params"] = [p for p in group["params"] if id(p) in self.owned]
        return optimizers

    def _run(self, x, reduction: str):
        from torch.distributed import pipelining

        key = (tuple(x.shape), reduction)
        if key not in self._schedules:
            # A stage fixes its tensors' shapes at its first step: a shorter last batch gets its own.
            stage = pipelining.PipelineStage(self.stage, self.rank, self.world, self.device)
            loss = lambda out, tgt: self.model.pipeline_nll(out, tgt, reduction)  # noqa: E731
            cls = getattr(pipelining, SCHEDULES[self.schedule] if reduction == "mean" else "ScheduleGPipe")
            self._schedules[key] = cls(stage, self.microbatches, loss_fn=loss)
        return self._schedules[key]

    def train_step(self, batch, optimizers, max_grad_norm=None):
        x, y = self.model.pipeline_inputs(batch)
        schedule = self._run(x, "mean")
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        losses: list = []
        with self.autocast():
            if self.rank == 0:
                schedule.step(x, target=y if self.world == 1 else None, losses=losses)
            else:
                schedule.step(target=y if self.rank == self.world - 1 else None, losses=losses)
        for p in self.tied:
            dist.all_reduce(p.grad, group=self.tie_group)
        if max_grad_norm:
            _clip_pipeline(self.stage, self.tied, max_grad_norm, self.rank)
        for opt in optimizers:
            opt.step()
        loss = torch.stack(losses).mean().float() if losses else torch.zeros(())
        dist.broadcast(loss, src=self.world - 1)
        return {"loss": float(loss)}

    @torch.no_grad()
    def eval_nll(self, batch):
        x, y = self.model.pipeline_inputs(batch)
        schedule, losses = self._run(x, "sum"), []
        if self.rank == 0:
            schedule.eval(x, target=y if self.world == 1 else None, losses=losses)
        else:
            schedule.eval(target=y if self.rank == self.world - 1 else None, losses=losses)
        total = torch.stack(losses).sum().double() if losses else torch.zeros((), dtype=torch.float64)
        dist.broadcast(total, src=self.world - 1)
        return float(total), int((y != -100).sum())

    def full_state(self):
        mine = {k: v.detach().cpu() for k, v in self.stage.state_dict().items()}
        parts = [None] * self.world if self.rank == 0 else None
        dist.gather_object(mine, parts, dst=0)
        if self.rank:
            return None
        # Every key is some stage's; a tied weight under each end stage's own name.
        return {k: v for part in parts for k, v in part.items()}

    def save_sharded(self, optimizers, path):
        import torch.distributed.checkpoint as dcp

        dcp.save({f"stage{self.rank}": self._state(optimizers)}, checkpoint_id=path)

    def load_sharded(self, optimizers, path):
        import torch.distributed.checkpoint as dcp

        state = {f"stage{self.rank}": self._state(optimizers)}
        dcp.load(state, checkpoint_id=path)
        state = state[f"stage{self.rank}"]
        self.stage.load_state_dict(state["model"])
        names = {id(p): n for n, p in self.stage.named_parameters()}
        for opt in optimizers:
            for p in (p for g in opt.param_groups for p in g["params"]):
                opt.state[p] = {k[len(names[id(p)]) + 1:]: v for k, v in state["optim"].items()
                                if k.startswith(names[id(p)] + ".")}

    def _state(self, optimizers) -> dict:
        """This stage's parameters and optimizer state, keyed by parameter name (DCP needs names,
        not the optimizer's positions). Before a first step, AdamW's state is made (zeros) so
        that a load has tensors to fill."""
        names = {id(p): n for n, p in self.stage.named_parameters()}
        optim = {}
        for opt in optimizers:
            for p in (p for g in opt.param_groups for p in g["params"]):
                st = opt.state[p] or {"step": torch.zeros(()), "exp_avg": torch.zeros_like(p),
                                      "exp_avg_sq": torch.zeros_like(p)}
                opt.state[p] = st
                optim.update({f"{names[id(p)]}.{k}": v for k, v in st.items()})
        return {"model": self.stage.state_dict(), "optim": optim}

    def sharded_layer_bytes(self):
        return _nbytes(self.stage.parameters()), self.full_bytes


def _clip_pipeline(stage: nn.Module, tied: list, max_norm: float, rank: int) -> None:
    """Clip by the norm of the whole model's gradient, each tied parameter counted once."""
    tied_ids = {id(p) for p in tied}
    sq = sum(float(p.grad.float().pow(2).sum()) for p in stage.parameters()
             if p.grad is not None and (id(p) not in tied_ids or rank == 0))
    total = torch.tensor(sq, dtype=torch.float64)
    dist.all_reduce(total)
    coef = max_norm / (float(total.sqrt()) + 1e-6)
    if coef < 1:
        for p in stage.parameters():
            if p.grad is not None:
                p.grad.mul_(coef)


def wrap(model: TrainableModel, device: torch.device, tc: TrainConfig) -> Parallel:
    """The model wrapped for the config's strategy on this worker (the process group is up)."""
    check(model, tc, dist.get_world_size() if dist.is_initialized() else 1)
    if tc.strategy == "fsdp":
        return FSDP(model, device, tc.precision)
    if tc.strategy == "tensor":
        return Tensor(model, device, tc.precision)
    if tc.strategy == "hybrid":
        return Hybrid(model, device, tc.precision, tc.tensor_parallel)
    if tc.strategy == "pipeline":
        return Pipeline(model, device, tc.precision, tc.microbatches, tc.pipeline_schedule)
    return DDP(model, device, tc.precision)
