"""Model registry: <root>/models/<name>/<version>/{weights.safetensors, config.json, metrics.json}.

It stores any kind of model genray builds from a config (generative families, the classifiers
that judge them, detectors): config.json names the family, and the family its kind.

A version is visible only once its COMMITTED marker exists, and the marker is written last,
so a publish that dies half-way leaves no readable version and the previous one intact.
Weights are safetensors; nothing here unpickles.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

from genray.cluster.storage import Storage
from genray.models import weights
from genray.models.catalog import Configurable, build, family_class

MARKER = "COMMITTED"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class RegistryError(LookupError):
    pass


@dataclass(frozen=True)
class ModelRecord:
    name: str
    version: int
    config: dict
    metrics: dict

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def kind(self) -> str:
        return family_class(self.config["family"]).kind

    def summary(self) -> dict:
        cls = family_class(self.config["family"])
        return {"name": self.name, "version": self.version, "kind": cls.kind, "family": cls.family,
                "modality": cls.modality_of(self.config), "metrics": self.metrics}


def parse_ref(ref: str) -> tuple[str, int | None]:
    name, _, version = ref.partition("@")
    if not NAME_RE.match(name):
        raise RegistryError(f"invalid model name {name!r}: use letters, digits, '.', '_', '-'")
    if version and not version.isdigit():
        raise RegistryError(f"invalid version {version!r} in {ref!r}: expected an integer")
    return name, int(version) if version else None


class Registry:
    def __init__(self, storage: Storage):
        self.storage = storage

    def _dir(self, name: str, version: int | None = None) -> str:
        return self.storage.path("models", name) if version is None else self.storage.path("models", name, str(version))

    def names(self, kind: str | None = None) -> list[str]:
        """Names with a committed version; of one kind ("generative", "classifier", ...) if given."""
        names = [n for n in self.storage.listdir(self.storage.path("models")) if self.versions(n)]
        return [n for n in names if self.record(n).kind == kind] if kind else names

    def versions(self, name: str) -> list[int]:
        out = []
        for v in self.storage.listdir(self._dir(name)):
            if v.isdigit() and self.storage.exists(f"{self._dir(name, int(v))}/{MARKER}"):
                out.append(int(v))
        return sorted(out)

    def resolve(self, ref: str) -> tuple[str, int]:
        name, version = parse_ref(ref)
        versions = self.versions(name)
        if not versions:
            raise RegistryError(f"no model named {name!r} in {self.storage.uri}")
        if version is None:
            return name, versions[-1]
        if version not in versions:
            raise RegistryError(f"model {name!r} has no version {version} (has {versions})")
        return name, version

    def record(self, ref: str) -> ModelRecord:
        name, version = self.resolve(ref)
        d = self._dir(name, version)
        return ModelRecord(name, version, self.storage.read_json(f"{d}/config.json"),
                           self.storage.read_json(f"{d}/metrics.json"))

    def list(self) -> list[ModelRecord]:
        return [self.record(n) for n in self.names()]

    def classifier_for(self, dataset: str | None) -> ModelRecord | None:
        """The classifier that judges or guards models of `dataset` by default: the one named
        "classifier" if it was trained on that data, else the first by name; None if none was."""
        found = sorted((r for r in self.list() if r.kind == "classifier" and r.metrics.get("dataset") == dataset),
                       key=lambda r: (r.name != "classifier", r.name))
        return found[0] if found else None

    def load(self, ref: str) -> tuple[Configurable, ModelRecord]:
        rec = self.record(ref)
        state = weights.state_from_bytes(
            self.storage.read_bytes(f"{self._dir(rec.name, rec.version)}/weights.safetensors"))
        model = build(family_class(rec.config["family"]).saved_config(rec.config, set(state)))
        model.load_state_dict(state)
        return model.eval(), rec

    def _claim(self, name: str) -> int:
        """The next version number, past any half-written one. On a file system with an atomic
        mkdir (a local disk, NFS) creating the version's folder claims it, so concurrent publishers
        of one name (trials of a sweep, say) never share a version."""
        while True:
            existing = [int(v) for v in self.storage.listdir(self._dir(name)) if v.isdigit()]
            version = max(existing, default=0) + 1
            if not self.storage.is_local:
                return version
            os.makedirs(self._dir(name), exist_ok=True)
            try:
                os.mkdir(self._dir(name, version))
                return version
            except FileExistsError:
                continue

    def publish(self, name: str, model: Configurable, metrics: dict) -> ModelRecord:
        parse_ref(name)
        version = self._claim(name)
        d = self._dir(name, version)
        self.storage.write_bytes(f"{d}/weights.safetensors", weights.to_bytes(model))
        self.storage.write_json(f"{d}/config.json", model.config())
        metrics = {**metrics, "published_at": time.time()}
        self.storage.write_json(f"{d}/metrics.json", metrics)
        self.storage.write_bytes(f"{d}/{MARKER}", b"")
        return ModelRecord(name, version, model.config(), metrics)

    def update_metrics(self, ref: str, metrics: dict) -> ModelRecord:
        rec = self.record(ref)
        merged = {**rec.metrics, **metrics}
        self.storage.write_json(f"{self._dir(rec.name, rec.version)}/metrics.json", merged)
        return ModelRecord(rec.name, rec.version, rec.config, merged)

