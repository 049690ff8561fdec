"""Every kind of model genray stores (generative families, classifiers, detectors), constructible
by name from the JSON config saved beside its weights.

A class registers with @register. Its config is captured from its constructor's arguments as it
is built (in the spirit of diffusers' register_to_config), so a saved config cannot drift from
__init__: `config()` is what rebuilds it.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import json
from typing import ClassVar

from torch import nn

from genray.models.errors import ConfigError

_CLASSES: dict[str, type["Configurable"]] = {}
# Packages whose modules register classes when imported.
_PROVIDERS = ("genray.models.families", "genray.models.classifiers", "genray.models.summarize",
              "genray.models.style")
# Keys that configs saved before training settings moved to the training config still carry.
_MOVED_TO_TRAINING = frozenset({"lr", "max_grad_norm"})


class Configurable(nn.Module):
    """A module rebuilt from a JSON config: its constructor arguments plus its `family` name."""

    family: ClassVar[str]
    kind: ClassVar[str] = "generative"  # "generative" | "classifier" | "detector"
    modality: ClassVar[str]  # the data it models or judges: "image" | "text" | "music" | "series"
    # What the family does beyond training and sampling. The catalogs in models/robustness,
    # models/explain and models/inpaint read these, and every layer above models/ asks the
    # catalogs: none special-cases a family (tests/test_layers.py holds them to it).
    attacks: ClassVar[tuple[str, ...]] = ()  # attack methods it takes (on it, or on what it makes)
    defenses: ClassVar[tuple[str, ...]] = ()  # how it defends a classifier's inputs
    # "attribution" (every method of models/explain/methods.py), "pdp", "traversal" or "exact"
    explanations: ClassVar[tuple[str, ...]] = ()
    inpainting: ClassVar[tuple[str, ...]] = ()  # inpainting methods, the default first
    encodes: ClassVar[bool] = False  # maps images to its latent: pdp and traversal start from images
    scores_images: ClassVar[bool] = False  # judges images itself (a discriminator): explained on its own samples

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _capturing(cls.__init__)

    @classmethod
    def from_config(cls, config: dict) -> "Configurable":
        args = {k: v for k, v in config.items() if k != "family"}
        params = inspect.signature(cls.__init__).parameters
        unknown = sorted(set(args) - set(params))
        if unknown:
            accepted = sorted(p for p in params if p != "self")
            raise ConfigError(f"{cls.family} models take no setting(s) {unknown}; accepted: {accepted}")
        return cls(**args)

    @classmethod
    def saved_config(cls, config: dict, keys: set[str]) -> dict:
        """A saved config as this version of the family reads it, given the names of the saved
        weights (a family whose settings grew fills in what older saves imply)."""
        return config

    @classmethod
    def capability(cls, name: str, config: dict) -> tuple[str, ...]:
        """The methods of one capability ("attacks", "defenses", "explanations", "inpainting")
        that a saved config supports: the class's, unless the config rules some out."""
        return getattr(cls, name)

    @classmethod
    def modality_of(cls, config: dict) -> str:
        """The modality a saved config is about (a family may model several)."""
        return cls.modality

    def config(self) -> dict:
        """The JSON-serialisable constructor arguments (defaults filled in), plus the family name."""
        return {"family": self.family, **self.__dict__["_init_args"]}


def _capturing(init):
    sig = inspect.signature(init)

    @functools.wraps(init)
    def wrapped(self, *args, **kwargs):
        # Only the outermost __init__ (the concrete class's) records: a base class's __init__
        # called through super() sees derived arguments, not the user's.
        if "_init_args" not in self.__dict__:
            bound = sig.bind(self, *args, **kwargs)
            bound.apply_defaults()
            captured = {k: v for k, v in list(bound.arguments.items())[1:]}
            try:
                json.dumps(captured)
            except TypeError as e:
                raise ConfigError(f"{type(self).__name__} settings must be JSON values: {e}") from None
            self.__dict__["_init_args"] = captured
        init(self, *args, **kwargs)

    return wrapped


def register(cls: type[Configurable]) -> type[Configurable]:
    """Class decorator that makes a model class constructible by its family name."""
    _CLASSES[cls.family] = cls
    return cls


def _load() -> None:
    for pkg in _PROVIDERS:
        importlib.import_module(pkg)


def family_class(name: str) -> type[Configurable]:
    _load()
    try:
        return _CLASSES[name]
    except KeyError:
        raise ConfigError(f"unknown model family {name!r}; known: {family_names()}") from None


def family_names(kind: str | None = "generative") -> list[str]:
    """Registered family names of one kind (by default the generative families; None: all)."""
    _load()
    return sorted(n for n, c in _CLASSES.items() if kind is None or c.kind == kind)


def build(config: dict) -> Configurable:
    """Rebuild a model from the JSON config saved beside its weights."""
    config = {k: v for k, v in config.items() if k not in _MOVED_TO_TRAINING}
    return family_class(config["family"]).from_config(config)
