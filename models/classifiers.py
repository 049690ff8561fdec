"""Image classifiers: the victims of attacks and defenses, and the judges of generative models.

ImageClassifier is a small CNN trained on a labelled image data set, either through the one
Ray Train loop (`genray train classifier`: its NLL is the cross-entropy of the labels) or
in-process with `fit()` (the judge that `genray eval` trains once per data set). Its
penultimate features define a Fréchet distance between two sets of images (the FID recipe of
Heusel et al., 2017, with this classifier in place of Inception, which is neither available
offline nor meaningful on 28x28 digits); its accuracy on generated images tells whether a
class-conditional model draws the class it was asked for.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genray.models.base import TrainableModel
from genray.models.catalog import register
from genray.models.errors import DataError
from genray.models.optim import OptimizerSettings
from genray.models.robustness.attacks import METHODS as ATTACKS


@register
class ImageClassifier(TrainableModel):
    """Stored in the model registry like any model, with kind "classifier". Takes images as
    uint8 in [0, 255] or float in [0, 1], (B, C, H, W); returns logits (B, classes)."""
    family = "classifier"
    kind = "classifier"
    modality = "image"
    attacks = ATTACKS
    explanations = ("attribution",)
    nll_unit = "nats/label"

    def __init__(self, shape: list[int], num_classes: int, width: int = 32, features: int = 64, depth: int = 1):
        super().__init__()
        C, H, W = shape
        self.shape, self.num_classes = list(shape), num_classes

        def stage(c_in: int, c_out: int) -> list[nn.Module]:  # depth 3x3 convolutions
            return [nn.Conv2d(c_in, c_out, 3, 1, 1), nn.ReLU()] + [
                m for _ in range(depth - 1) for m in (nn.Conv2d(c_out, c_out, 3, 1, 1), nn.ReLU())]

        self.body = nn.Sequential(
            *stage(C, width), nn.MaxPool2d(2),  # (B, w, H/2, W/2)
            *stage(width, 2 * width), *([nn.MaxPool2d(2)] if depth > 1 else []),  # (B, 2w, H/4, W/4) at depth > 1
            nn.AdaptiveAvgPool2d(4),  # (B, 2w, 4, 4)
            nn.Flatten(), nn.Linear(32 * width, features), nn.ReLU(),
        )
        self.head = nn.Linear(features, num_classes)

    @classmethod
    def default_config(cls, meta: dict) -> dict:
        if not meta.get("num_classes"):
            raise DataError(f"a classifier needs labelled images; data set {meta.get('name')!r} has no labels")
        # Two convolutions per stage where the images are large enough to pool twice (MNIST:
        # 97.4% against 95.0% for one, with the preset's budget).
        depth = 2 if min(meta["shape"][1:]) >= 16 else 1
        return {"family": cls.family, "shape": meta["shape"], "num_classes": meta["num_classes"], "depth": depth}

    @classmethod
    def search_space(cls, meta: dict) -> dict[str, tuple]:
        return {"lr": ("loguniform", 3e-4, 1e-2), "width": ("choice", [16, 32, 64]),
                "weight_decay": ("choice", [0.0, 1e-4, 1e-3])}

    @staticmethod
    def _prep(images: torch.Tensor) -> torch.Tensor:
        """uint8 in [0, 255] or float in [0, 1] -> float in [-1, 1]."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return x * 2 - 1

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(self._prep(images))  # (B, features)

    def forward(self, images: torch.Tensor | dict) -> torch.Tensor | dict:
        """Images -> logits (B, classes); a training batch {"image", "label"} -> {"loss", "accuracy"}."""
        if isinstance(images, dict):
            logits = self.head(self.features(images["image"]))
            labels = images["label"].long()
            return {"loss": F.cross_entropy(logits, labels),
                    "accuracy": (logits.argmax(1) == labels).float().mean().detach()}
        return self.head(self.features(images))

    @torch.no_grad()
    def eval_nll(self, batch: dict) -> tuple[float, int]:
        logits = self(batch["image"])
        return float(F.cross_entropy(logits, batch["label"].long(), reduction="sum")), len(logits)

    def fit(self, images: torch.Tensor, labels: torch.Tensor, epochs: int = 8, batch_size: int = 64,
            seed: int = 0) -> "ImageClassifier":
        g = torch.Generator().manual_seed(seed)
        opts = self.make_optimizers(OptimizerSettings(lr=2e-3))
        self.train()
        for _ in range(epochs):
            perm = torch.randperm(len(images), generator=g)
            for i in range(0, len(images), batch_size):
                idx = perm[i:i + batch_size]
                x = images[idx]
                # One-pixel random shifts: features that do not hinge on exact placement.
                dx, dy = torch.randint(-1, 2, (2,), generator=g).tolist()
                self.train_step({"image": torch.roll(x, (dy, dx), dims=(2, 3)), "label": labels[idx]}, opts)
        return self.eval()

    @torch.no_grad()
    def batched(self, fn, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        return torch.cat([fn(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])

    @torch.no_grad()
    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        pred = self.batched(self, images).argmax(1)
        return float((pred == labels.long()).float().mean())

    @torch.no_grad()
    def frechet_distance(self, a: torch.Tensor, b: torch.Tensor) -> float:
        """Fréchet distance between Gaussians fitted to the features of image sets a and b."""
        return frechet_distance(self.batched(self.features, a).double().numpy(),
                                self.batched(self.features, b).double().numpy())


def frechet_distance(fa: np.ndarray, fb: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) for feature rows fa, fb. The trace of
    the square root is the sum of the square roots of the eigenvalues of S_a S_b (real and
    non-negative for a product of covariances), which stays stable where features are dead."""
    mu_a, mu_b = fa.mean(0), fb.mean(0)
    sa, sb = np.cov(fa, rowvar=False), np.cov(fb, rowvar=False)
    eig = np.linalg.eigvals(sa @ sb).real.clip(min=0)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * np.sqrt(eig).sum())
