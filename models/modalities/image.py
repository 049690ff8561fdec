"""Images: 8-bit pictures (C, H, W). Samples are float tensors in [0, 1], returned as PNG;
data are flattened uint8 pixels with an optional class label. Evaluation adds bits/dim and a
Fréchet distance in the features of a classifier trained on the data set (a digit "FID")."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from genray.models.base import seeded
from genray.models.codecs.images import grid, to_png
from genray.models.errors import DataError
from genray.models.modalities.base import Modality, b64, dense, fixed_list, register
from genray.models.splits import SPLITS, assign

FID_SAMPLES = 1000
SAMPLE_CHUNK = 250


@register
class Image(Modality):
    name = "image"
    nll_unit = "nats/image"
    file_hint = "FILE.png"

    def check(self, fields: dict[str, Any], config: dict) -> list[tuple[str, str]]:
        label = fields.get("label")
        if label is None:
            return []
        classes = config.get("num_classes", 0)
        if not classes:
            return [("label", "this model is not class-conditional")]
        if label >= classes:
            return [("label", f"label must be in [0, {classes - 1}]")]
        return []

    def to_json(self, sample: torch.Tensor, options: dict[str, Any]) -> str:
        return b64(to_png(sample))

    def to_text(self, sample) -> None:
        return None

    def write(self, samples: list, output: str) -> list[str]:
        """All samples tiled into one PNG grid."""
        with open(output, "wb") as f:
            f.write(to_png(grid(torch.stack(samples))))
        return [output]

    def to_tensors(self, meta: dict, batch: dict[str, np.ndarray]) -> dict:
        # torch.tensor copies: Ray's batches are read-only views.
        out = {"image": torch.tensor(dense(batch["image"])).reshape(-1, *meta["shape"])}
        if "label" in batch:
            out["label"] = torch.tensor(batch["label"])
        return out

    def tables(self, images: np.ndarray, labels: np.ndarray | None,
               num_classes: int | None = None) -> tuple[dict[str, pa.Table], dict]:
        """Images (N, C, H, W) uint8 with optional labels -> train / val / test tables, a seeded
        tenth each to val and test, within every class where there are labels."""
        if len(images) < 3:
            raise DataError(f"need at least 3 images (train, val and test), got {len(images)}")
        split = assign(len(images), labels)
        meta = {"modality": self.name, "shape": list(images.shape[1:])}
        if labels is not None:
            meta["num_classes"] = int(num_classes or labels.max() + 1)

        def table(mask):
            cols = {"image": fixed_list(images[mask])}
            if labels is not None:
                cols["label"] = pa.array(labels[mask].astype(np.int64))
            return pa.table(cols)

        return {name: table(split == i) for i, name in enumerate(SPLITS)}, meta

    # ---- evaluation -------------------------------------------------------------------
    def wants_judge(self, meta: dict) -> bool:
        return bool(meta.get("num_classes"))

    def metrics(self, model, splits, meta, *, nll=None, judge=None, seed=0) -> dict:
        out = {}
        if nll is not None:
            out["heldout_bits_per_dim"] = nll / (math.prod(meta["shape"]) * math.log(2))
        if judge is not None:
            images, labels = sample_images(model, FID_SAMPLES, meta.get("num_classes", 0), seed)
            out.update(quality(images, labels, splits, judge))
        return out


def sample_images(model, n: int, num_classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """n samples (n, C, H, W), classes in equal shares for a class-conditional model."""
    labels = torch.arange(n) % num_classes if num_classes and "label" in model.sample_options else None
    gens = [seeded(seed * 1_000_003 + i) for i in range(n)]
    chunks = []
    for i in range(0, n, SAMPLE_CHUNK):
        opts = {"label": labels[i:i + SAMPLE_CHUNK].tolist()} if labels is not None else {}
        chunks += model.sample(min(SAMPLE_CHUNK, n - i), generator=gens[i:i + SAMPLE_CHUNK], **opts)
    return torch.stack(chunks), labels


def quality(samples: torch.Tensor, labels: torch.Tensor | None, splits: dict, judge) -> dict:
    """Digit-FID of samples (N, C, H, W) in [0, 1] against the held-out images, the floor that
    real training images score, and the judge's accuracy on the labels samples were drawn for."""
    train, val = splits["train"]["image"], splits["heldout"]["image"]
    # A random subset of real images: some data sets are sorted by label.
    real = train[torch.randperm(len(train), generator=seeded(0))[:len(samples)]]
    out = {"fid": judge.frechet_distance(samples, val), "fid_samples": len(samples), "fid_reference": len(val),
           "fid_real_floor": judge.frechet_distance(real, val)}
    if labels is not None:
        out["label_accuracy"] = judge.accuracy(samples, labels)
    return out
