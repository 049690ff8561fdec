"""Optimizer settings, kept apart from a model's architecture (as nanoGPT keeps GPTConfig to the
architecture): a family decides its parameter groups and how many optimizers it steps, the
training config decides the numbers."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class OptimizerSettings:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0  # decoupled (AdamW); families may exempt biases and norms

    def __post_init__(self):
        from genray.models.errors import ConfigError

        if not self.lr > 0 or self.weight_decay < 0 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"optimizer settings need lr > 0, weight_decay >= 0, betas in [0, 1): {self}")

    def adamw(self, params, weight_decay: float | None = None) -> torch.optim.AdamW:
        wd = self.weight_decay if weight_decay is None else weight_decay
        return torch.optim.AdamW(params, lr=self.lr, betas=tuple(self.betas), weight_decay=wd)
