"""Training settings, apart from a model's architecture: the budget, the optimizer's numbers,
the learning-rate schedule and gradient clipping. Saved with every published model."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from genray.models.base import STRATEGIES  # trainers/strategies.py applies them
from genray.models.errors import ConfigError
from genray.models.optim import OptimizerSettings

SCHEDULES = ("constant", "cosine")
DEFENSES = ("none", "augment", "adversarial")  # trainers/defenses.py; for image classifiers
PRECISIONS = ("fp32", "bf16", "fp16")
PIPELINE_SCHEDULES = ("gpipe", "1f1b")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1
    batch_size: int = 64  # per worker
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    max_grad_norm: float | None = None
    schedule: str = "constant"  # "cosine": decays to min_lr_ratio * lr over the run, after warmup
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    seed: int = 0
    log_every: int = 50  # steps between progress lines (0: none)
    defense: str = "none"  # "augment" | "adversarial" (PGD training with the settings below)
    defense_eps: float = 0.3
    defense_steps: int = 7
    defense_norm: str = "linf"
    # The budget rises linearly from 0 to defense_eps over this fraction of the run's steps: deeper
    # networks trained at the full budget from the start can stall at chance.
    defense_ramp: float = 0.0
    # How the workers share the model (trainers/strategies.py), and autocast's precision.
    strategy: str = "ddp"
    precision: str = "fp32"
    tensor_parallel: int = 2  # hybrid: workers per tensor-parallel group (the mesh is dp x this)
    microbatches: int = 4  # pipeline: microbatches per batch
    pipeline_schedule: str = "gpipe"

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be >= 1")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        if self.warmup_steps < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError("warmup_steps must be >= 0 and min_lr_ratio in [0, 1]")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ConfigError("max_grad_norm must be > 0")
        if self.defense not in DEFENSES:
            raise ConfigError(f"defense must be one of {list(DEFENSES)}, got {self.defense!r}")
        if self.defense_norm not in ("linf", "l2") or not self.defense_eps > 0 or not 1 <= self.defense_steps <= 100:
            raise ConfigError("defense_norm must be linf or l2, defense_eps > 0 and defense_steps in [1, 100]")
        if not 0 <= self.defense_ramp <= 1:
            raise ConfigError("defense_ramp must be in [0, 1]")
        for name, value, known in (("strategy", self.strategy, STRATEGIES), ("precision", self.precision, PRECISIONS),
                                   ("pipeline_schedule", self.pipeline_schedule, PIPELINE_SCHEDULES)):
            if value not in known:
                raise ConfigError(f"{name} must be one of {list(known)}, got {value!r}")
        if self.tensor_parallel < 2 or self.microbatches < 1:
            raise ConfigError("tensor_parallel must be >= 2 and microbatches >= 1")
        self.optimizer()  # checks lr, betas, weight decay

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown training setting(s) {unknown}; known: {sorted(names)}")
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(**d)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    def optimizer(self) -> OptimizerSettings:
        return OptimizerSettings(lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)

    def lr_factor(self, step: int, total_steps: int) -> float:
        """The multiplier of lr at optimizer step `step` (0-based) of `total_steps`."""
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - self.warmup_steps) / max(1, total_steps - self.warmup_steps))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    def defense_budget(self, step: int, total_steps: int) -> float:
        """The adversarial-training budget at optimizer step `step` (0-based) of `total_steps`."""
        ramp = self.defense_ramp * total_steps
        return self.defense_eps * min(1.0, (step + 1) / ramp) if ramp >= 1 else self.defense_eps

    def schedulers(self, optimizers, total_steps: int) -> list[torch.optim.lr_scheduler.LambdaLR]:
        return [torch.optim.lr_scheduler.LambdaLR(opt, lambda step: self.lr_factor(step, total_steps))
                for opt in optimizers]
