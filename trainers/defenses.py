"""Training-time defenses of image classifiers, applied to each batch inside the training step,
before the (DDP-wrapped) forward pass, so that gradients sync as for any batch:

    augment       Gaussian pixel noise and random shifts of up to AUG_SHIFT pixels
    adversarial   PGD adversarial training (Madry et al., 2018): every image is replaced by a
                  PGD example inside the eps-ball of the current model (genray.models.robustness.pgd),
                  the budget ramped up over the first defense_ramp of the run
"""
from __future__ import annotations

from typing import Callable

import torch

from genray.models.robustness import pgd
from genray.trainers.config import TrainConfig

AUG_NOISE, AUG_SHIFT = 0.1, 2
Transform = Callable[[dict, int], dict]  # (batch, optimizer step) -> batch


def _floats(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


def batch_transform(tc: TrainConfig, model, generator: torch.Generator, total_steps: int) -> Transform | None:
    """The per-batch transform of the training config's defense, or None."""
    if tc.defense == "none":
        return None
    if tc.defense == "augment":
        def augment(batch: dict, step: int) -> dict:
            x = _floats(batch["image"])
            noise = torch.randn(x.shape, generator=generator).to(x.device) * AUG_NOISE
            dx, dy = torch.randint(-AUG_SHIFT, AUG_SHIFT + 1, (2,), generator=generator).tolist()
            return {**batch, "image": torch.roll(x + noise, (dy, dx), dims=(2, 3)).clamp(0, 1)}
        return augment

    def adversarial(batch: dict, step: int) -> dict:
        x = pgd(model, _floats(batch["image"]), batch["label"].long(), eps=tc.defense_budget(step, total_steps),
                steps=tc.defense_steps, norm=tc.defense_norm, generator=generator)
        return {**batch, "image": x}
    return adversarial
