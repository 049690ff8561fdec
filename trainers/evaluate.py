"""Held-out evaluation of a registry model on its data set's test split (or, on request, its
validation split), stored beside it as metrics["eval"] (test) or metrics["eval_val"] (val).

Runs in-process: evaluation reads weights, it does not change them, and the validation splits
of the embedded data sets take seconds to a minute on one core. Every model gets its NLL per
unit (where it has a likelihood); its modality adds the rest (models/modalities/):

    classifiers   cross-entropy (nats/label) and accuracy
    text, music   NLL per char / per note (exact)
    series        NLL per value and one-step-ahead forecast MSE
    images        NLL bound in bits/dim on the 8-bit pixels (flow: dequantized; VAE:
                  importance-weighted), and for every image family a Fréchet distance between
                  samples and held-out images in the features of a genray-trained classifier
                  (a digit "FID"), plus that classifier's accuracy on class-conditional samples.
"""
from __future__ import annotations

import torch

from genray.cluster.registry import ModelRecord, Registry, RegistryError
from genray.cluster.storage import Storage
from genray.models import modalities
from genray.models.classifiers import ImageClassifier
from genray.models.modalities.image import quality
from genray.trainers import datasets


def judge_name(meta: dict) -> str:
    return f"judge-{datasets.cache_key(meta['name'])}"


def judge(meta: dict, storage: Storage, splits: dict) -> ImageClassifier:
    """The classifier of a labelled image data set (splits: its train and val tensors), a
    registry model like any other: trained on the training split once (seconds on MNIST-5k),
    then loaded."""
    registry = Registry(storage)
    net = ImageClassifier(meta["shape"], meta["num_classes"])
    name = judge_name(meta)
    try:
        stored, rec = registry.load(name)
        if rec.config == net.config():
            return stored
    except RegistryError:
        pass
    torch.manual_seed(0)
    net.fit(splits["train"]["image"], splits["train"]["label"])
    val_accuracy = net.accuracy(splits["val"]["image"], splits["val"]["label"])
    registry.publish(name, net, {"dataset": meta["name"], "val_accuracy": val_accuracy})
    return net


def splits_of(meta: dict, storage: Storage, names=("train", "val")) -> dict:
    return {split: datasets.local_arrays(meta, split, storage) for split in names}


def image_quality(samples: torch.Tensor, labels: torch.Tensor | None, meta: dict, storage: Storage,
                  split: str = "test") -> dict:
    """Digit-FID (and label accuracy) of samples (N, C, H, W) in [0, 1] from any source, against
    the held-out `split`."""
    splits = splits_of(meta, storage, ("train", "val", datasets.held_out(split)))
    return quality(samples, labels, {**splits, "heldout": splits[split]}, judge(meta, storage, splits))


def evaluate(ref: str, storage: Storage, batch_size: int = 256, seed: int = 0, split: str = "test") -> ModelRecord:
    """Score `ref` on its data set's `split` ("test", the reported figure; "val" for choices)."""
    split = datasets.held_out(split)
    registry = Registry(storage)
    model, rec = registry.load(ref)
    if rec.kind not in ("generative", "classifier"):
        raise RegistryError(f"{rec.ref} is a {rec.kind}: genray eval scores generative models and classifiers")
    meta = datasets.prepare(rec.metrics["dataset"], storage)
    modality = modalities.get(meta["modality"])
    # The training split is read only for the judge of a labelled image set.
    wants_judge = rec.kind == "generative" and modality.wants_judge(meta)
    splits = splits_of(meta, storage, tuple(dict.fromkeys(("train", "val", split) if wants_judge else (split,))))
    val = splits["heldout"] = splits[split]
    rows = len(next(iter(val.values())))
    result = {"dataset": rec.metrics["dataset"], "split": split, "rows": rows}
    torch.manual_seed(seed)  # the VAE's latent draws and the flow's dequantization noise
    nll = None
    if model.nll_unit is not None:
        total, units = 0.0, 0
        for i in range(0, rows, batch_size):
            s, u = model.heldout_nll({k: v[i:i + batch_size] for k, v in val.items()})
            total, units = total + s, units + u
        nll = total / units
        result.update(heldout_nll=nll, nll_unit=model.nll_unit, units=units)
    if rec.kind == "classifier":
        result["accuracy"] = model.accuracy(val["image"], val["label"])
    else:
        judge_net = judge(meta, storage, splits) if wants_judge else None
        result.update(modality.metrics(model, splits, meta, nll=nll, judge=judge_net, seed=seed))
    return registry.update_metrics(rec.ref, {"eval" if split == "test" else "eval_val": result})
