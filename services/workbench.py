"""What the capabilities' runs share: registry models, held-out rows in the
evaluation order, default classifiers and detector thresholds, loaded once per replica, and the
request's images."""
from __future__ import annotations

import base64
import binascii
import threading

import torch

from genray.cluster.datacache import evaluation_rows
from genray.cluster.registry import Registry, RegistryError
from genray.cluster.storage import Storage
from genray.models.codecs.images import from_png, to_png
from genray.models.errors import DataError, OptionError
from genray.models.modalities.base import b64
from genray.models.robustness import anomaly_scores, threshold

CALIBRATION_ROWS = 500  # validation images that calibrate a detector's threshold (a choice: never test rows)
DETECT_FPR = 0.05


def from_b64(value: str, field: str, what: str | None = None) -> bytes:
    """A request field's base64 bytes; a 422 naming `field` (described as `what`) if it is not base64."""
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise OptionError(f"{what or field} is not base64", field) from None


def pngs(images: torch.Tensor) -> list[str]:
    return [b64(to_png(img)) for img in images]


class Workbench:
    """Registry models, held-out rows, default classifiers and detector thresholds, loaded once
    and kept, for the requests of one replica."""

    def __init__(self, storage_uri: str, refs: dict[str, str]):
        self.registry = Registry(Storage(storage_uri))
        self.refs = refs  # served name -> registry ref
        self._cache: dict = {}
        self._lock = threading.RLock()  # a make() may fill another key

    def _cached(self, key, make):
        with self._lock:
            if key not in self._cache:
                self._cache[key] = make()
            return self._cache[key]

    def model(self, ref: str):
        return self._cached(("model", ref), lambda: self.registry.load(ref))

    def heldout(self, rec, split: str = "test") -> dict:
        """The `split` of the data set `rec` was trained on, in the evaluation order (the API's
        `indices` are positions in it), from the data cache."""
        def read():
            try:
                return evaluation_rows(rec, self.registry.storage, split)
            except DataError as e:
                raise OptionError(f"{e}: send 'inputs'", "indices") from None
        return self._cached((split, rec.ref), read)

    def classifier(self, name: str | None, dataset: str):
        """The classifier `name` and its record, or by default one trained on `dataset` (the one
        named "classifier" first)."""
        if name is not None:
            try:
                model, rec = self.model(name)
            except RegistryError as e:
                raise OptionError(str(e), "classifier") from None
            if rec.kind != "classifier":
                raise OptionError(f"{rec.ref} is a {rec.kind} model, not a classifier", "classifier")
        else:
            found = self._cached(("classifier_for", dataset), lambda: self.registry.classifier_for(dataset))
            if found is None:
                raise OptionError(f"no classifier trained on {dataset!r} in the registry: train one with "
                                  f"`genray train classifier --dataset {dataset}`", "classifier")
            model, rec = self.model(found.ref)
        return model, rec

    def judge(self, name: str | None, rec):
        """The classifier for images of model `rec`: one that takes them (same shape), with as
        many classes as `rec` has."""
        classifier, c = self.classifier(name, rec.metrics.get("dataset"))
        if list(classifier.shape) != list(rec.config["shape"]) or (
                rec.config.get("num_classes") and classifier.num_classes != rec.config["num_classes"]):
            raise OptionError(f"{c.ref} classifies images of shape {classifier.shape} into {classifier.num_classes} "
                              f"classes; {rec.ref} has shape {rec.config['shape']}", "classifier")
        return classifier

    def threshold(self, rec, model) -> float:
        def calibrate():
            val = self.heldout(rec, "val")["image"][:CALIBRATION_ROWS].float() / 255.0
            return threshold(anomaly_scores(model, val), fpr=DETECT_FPR)
        return self._cached(("threshold", rec.ref), calibrate)

    def images(self, req, rec, shape: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The images of a request with `inputs` or `indices` (schemas.ImageInputs): (B, C, H, W) in
        [0, 1], and their labels where they are test rows."""
        if req.indices is not None:
            val = self.heldout(rec)
            n = len(val["image"])
            bad = [i for i in req.indices if i >= n]
            if bad:
                raise OptionError(f"indices must be below {n} (the test rows of {rec.metrics.get('dataset')}),"
                                  f" got {bad[:5]}", "indices")
            idx = torch.tensor(req.indices)
            return val["image"][idx].float() / 255.0, (val["label"][idx] if "label" in val else None)
        images = []
        for i, s in enumerate(req.inputs):
            data = from_b64(s, "inputs", f"inputs[{i}]")
            try:
                images.append(from_png(data, channels=shape[0], size=(shape[2], shape[1])))
            except ValueError as e:  # the wrong size or pixel format: checked before decoding
                raise OptionError(f"inputs[{i}]: {e}; the model takes images of shape {shape}", "inputs") from None
            except OSError:
                raise OptionError(f"inputs[{i}] is not an image Pillow can read", "inputs") from None
        return torch.stack(images).float() / 255.0, None
