"""Held-out evaluation of a registry model on its data set's validation split, stored beside it.

Runs in-process: evaluation reads weights, it does not change them, and the validation splits
of the embedded data sets take seconds on one core.
"""
from __future__ import annotations

import math

import torch

from cluster.registry import ModelRecord, Registry
from cluster.storage import Storage
from trainers import datasets


def evaluate(ref: str, storage: Storage, batch_size: int = 256, seed: int = 0) -> ModelRecord:
    registry = Registry(storage)
    model, rec = registry.load(ref)
    if model.nll_unit is None:
        raise ValueError(f"{rec.ref} is a {model.family} model: it has no likelihood to evaluate")
    meta = datasets.prepare(rec.metrics["dataset"], storage)
    val = datasets.local_arrays(meta, "val", storage)
    rows = len(next(iter(val.values())))
    torch.manual_seed(seed)  # the VAE's latent draws and the flow's dequantization noise
    nll, units = 0.0, 0
    for i in range(0, rows, batch_size):
        s, u = model.eval_nll({k: v[i:i + batch_size] for k, v in val.items()})
        nll, units = nll + s, units + u
    result = {"dataset": rec.metrics["dataset"], "split": "val", "rows": rows,
              "heldout_nll": nll / units, "nll_unit": model.nll_unit}
    if meta["modality"] == "image":
        result["heldout_bits_per_dim"] = nll / units / (math.prod(meta["shape"]) * math.log(2))
    return registry.update_metrics(rec.ref, {"eval": result})
