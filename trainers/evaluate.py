"""Held-out evaluation of a registry model on its data set's validation split, stored beside it.

Runs in-process: evaluation reads weights, it does not change them, and the validation splits
of the embedded data sets take seconds to a minute on one core.

    text, music   NLL per char / per note (exact)
    series        NLL per value and one-step-ahead forecast MSE
    images        NLL bound in bits/dim on the 8-bit pixels (flow: dequantized; VAE:
                  importance-weighted), and for every image family a Fréchet distance between
                  samples and held-out images in the features of a genray-trained classifier
                  (a digit "FID"), plus that classifier's accuracy on class-conditional samples.
"""
from __future__ import annotations

import math

import torch

from cluster.registry import ModelRecord, Registry
from cluster.storage import Storage
from models import weights
from models.base import GenerativeModel, seeded
from models.classifiers import ImageJudge
from trainers import datasets

FID_SAMPLES = 1000


def judge(meta: dict, storage: Storage, train: dict, val: dict) -> ImageJudge:
    """The classifier for a labelled image data set (train and val: its splits as tensors),
    trained on its training split once and cached under the storage root's judges/ (seconds on
    MNIST-5k)."""
    base = storage.path("judges", datasets.cache_key(meta["name"]))
    net = ImageJudge(meta["shape"], meta["num_classes"])
    if storage.exists(f"{base}/config.json") and storage.read_json(f"{base}/config.json") == net.config():
        weights.load_bytes(net, storage.read_bytes(f"{base}/weights.safetensors"))
        return net.eval()
    torch.manual_seed(0)
    net.fit(train["image"], train["label"])
    storage.write_bytes(f"{base}/weights.safetensors", weights.to_bytes(net))
    storage.write_json(f"{base}/metrics.json", {"val_accuracy": net.accuracy(val["image"], val["label"])})
    storage.write_json(f"{base}/config.json", net.config())  # last: its presence means complete
    return net


def image_quality(samples: torch.Tensor, labels: torch.Tensor | None, meta: dict, storage: Storage) -> dict:
    """Digit-FID of samples (N, C, H, W) in [0, 1] against the validation images, and the
    judge's accuracy on the labels they were drawn for (if any)."""
    train, val_split = (datasets.local_arrays(meta, split, storage) for split in ("train", "val"))
    net = judge(meta, storage, train, val_split)
    val = val_split["image"]
    # Real training images score what a perfect model would (a random subset: some sets are sorted by label).
    real = train["image"][torch.randperm(len(train["image"]), generator=seeded(0))[:len(samples)]]
    out = {"fid": net.frechet_distance(samples, val), "fid_samples": len(samples), "fid_reference": len(val),
           "fid_real_floor": net.frechet_distance(real, val)}
    if labels is not None:
        out["label_accuracy"] = net.accuracy(samples, labels)
    return out


def sample_images(model: GenerativeModel, n: int, num_classes: int, seed: int = 0):
    """n samples, classes in equal shares for a class-conditional model."""
    labels = torch.arange(n) % num_classes if num_classes and "label" in model.sample_options else None
    opts = {"label": labels.tolist()} if labels is not None else {}
    gens = [seeded(seed * 1_000_003 + i) for i in range(n)]
    images = torch.cat([model.sample(min(250, n - i), generator=gens[i:i + 250],
                                     **{k: v[i:i + 250] for k, v in opts.items()}) for i in range(0, n, 250)])
    return images, labels


def evaluate(ref: str, storage: Storage, batch_size: int = 256, seed: int = 0) -> ModelRecord:
    registry = Registry(storage)
    model, rec = registry.load(ref)
    meta = datasets.prepare(rec.metrics["dataset"], storage)
    val = datasets.local_arrays(meta, "val", storage)
    rows = len(next(iter(val.values())))
    result = {"dataset": rec.metrics["dataset"], "split": "val", "rows": rows}
    torch.manual_seed(seed)  # the VAE's latent draws and the flow's dequantization noise
    if model.nll_unit is not None:
        nll, units = 0.0, 0
        for i in range(0, rows, batch_size):
            s, u = model.heldout_nll({k: v[i:i + batch_size] for k, v in val.items()})
            nll, units = nll + s, units + u
        result.update(heldout_nll=nll / units, nll_unit=model.nll_unit, units=units)
        if meta["modality"] == "image":
            result["heldout_bits_per_dim"] = nll / units / (math.prod(meta["shape"]) * math.log(2))
    if meta["modality"] == "series":
        pred, y = model.one_step(val)
        result["forecast_mse"] = float(((pred - y) ** 2).mean())
    if meta["modality"] == "image" and meta.get("num_classes"):
        images, labels = sample_images(model, FID_SAMPLES, meta["num_classes"], seed)
        result.update(image_quality(images, labels, meta, storage))
    return registry.update_metrics(rec.ref, {"eval": result})
