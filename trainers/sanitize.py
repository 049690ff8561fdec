"""Training-set sanitization against poisoning: flag rows of a registry classifier's training set
(as its run saw them, poisoned where it was), retrain the same spec without them on Ray Train,
and compare the backdoor's success and the clean accuracy before and after."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from genray.cluster.registry import ModelRecord, Registry
from genray.cluster.storage import Storage
from genray.models.errors import OptionError
from genray.models.robustness.backdoor import activation_clustering_flags, knn_flags, representations, spectral_flags
from genray.models.robustness.poison import Poison, backdoor_success, row_keys
from genray.trainers import datasets
from genray.trainers.poisoning import local_training_rows
from genray.trainers.run import TrainSpec, train

DETECTORS = ("spectral", "clustering", "knn")


@dataclass
class SanitizeReport:
    model: str
    method: str
    rows: int
    flagged: int
    poisoned: int  # rows the run poisoned (known here because the poisoning is part of the run's spec)
    caught: int  # flagged rows that were poisoned
    before: dict  # clean accuracy (and ASR, for a backdoor) of the model as trained
    after: dict = field(default_factory=dict)  # the same for the model retrained without the flagged rows
    retrained: str | None = None

    def summary(self) -> dict:
        out = {k: v for k, v in self.__dict__.items()}
        out["recall"] = self.caught / self.poisoned if self.poisoned else None
        out["precision"] = self.caught / self.flagged if self.flagged else None
        return out


def flag_rows(method: str, classifier, cols: dict, meta: dict, eps: float = 0.1) -> np.ndarray:
    """The training rows (bool, N) that detector `method` flags, from the classifier trained on them."""
    if method not in DETECTORS:
        raise OptionError(f"unknown detector {method!r}; known: {list(DETECTORS)}", "method")
    images = torch.as_tensor(cols["image"]).reshape(-1, *meta["shape"])
    labels = np.asarray(cols["label"])
    if method == "knn":
        return knn_flags(cols["image"], labels)
    features = representations(classifier, images)
    if method == "spectral":
        return spectral_flags(features, labels, eps)
    return activation_clustering_flags(features, cols["image"], labels)[0]


def retrain_spec(rec: ModelRecord, name: str, exclude: list[str], workers: int | None = None) -> TrainSpec:
    """The spec that trained `rec`, under a new name, with rows removed."""
    m, training = rec.metrics, dict(rec.metrics["training"])
    return TrainSpec(rec.config["family"], name=name, dataset=m["dataset"], workers=workers or m["workers"],
                     seed=training.pop("seed", 0), limit=m.get("limit"),
                     model={k: v for k, v in rec.config.items() if k != "family"}, train=training,
                     poison=m.get("poison"), exclude=exclude, cpus_per_worker=m.get("cpus_per_worker", 1.0),
                     fresh=True)


def evaluate(classifier, test: dict, poison: Poison | None) -> dict:
    if poison is not None and poison.method == "badnets":
        return backdoor_success(classifier, test["image"], test["label"], poison)
    return {"clean_accuracy": classifier.accuracy(test["image"], test["label"]), "n": len(test["label"])}


def sanitize(ref: str, storage: Storage, *, method: str, eps: float = 0.1, name: str | None = None,
             workers: int | None = None, retrain: bool = True) -> SanitizeReport:
    """Flag the training rows of classifier `ref` with detector `method`; with retrain, train the
    same spec without them (published as `name`, default NAME-METHOD) and evaluate both."""
    registry = Registry(storage)
    classifier, rec = registry.load(ref)
    if rec.kind != "classifier":
        raise OptionError(f"{rec.ref} is a {rec.kind} model; sanitizing takes a classifier", "model")
    meta = datasets.prepare(rec.metrics["dataset"], storage)
    poison = Poison.from_dict(rec.metrics["poison"]) if rec.metrics.get("poison") else None
    cols, poisoned = local_training_rows(meta, storage, poison, rec.metrics.get("limit"))
    flags = flag_rows(method, classifier, cols, meta, eps)
    test = datasets.local_arrays(meta, "test", storage)  # the reported accuracies and attack success
    report = SanitizeReport(rec.ref, method, len(flags), int(flags.sum()), int(poisoned.sum()),
                            int((flags & poisoned).sum()), evaluate(classifier, test, poison))
    if retrain:
        keys = [k for k, f in zip(row_keys(cols), flags) if f]
        new = train(retrain_spec(rec, name or f"{rec.name}-{method}", keys, workers), storage)
        report.after, report.retrained = evaluate(registry.load(new.ref)[0], test, poison), new.ref
    return report
