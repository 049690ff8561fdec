"""Which explanation methods apply to a model, from its configuration: the one table that the CLI
and the server consult."""
from __future__ import annotations

from genray.models.explain.methods import METHODS
from genray.models.registry import family_class

GLOBAL = {"vae": ("pdp", "traversal"), "gan": ("pdp", "traversal"), "ar": ("pdp",)}
ATTRIBUTED = ("classifier", "transformer", "rnn", "vae", "gan", "flow", "ar")


def explain_methods(config: dict) -> tuple[str, ...]:
    family = family_class(config["family"]).family
    if family == "markov":
        return ("exact",)
    if family not in ATTRIBUTED:
        return ()
    return (*METHODS, *GLOBAL.get(family, ()))


def input_kind(config: dict) -> str:
    """What a model's explanation takes: "image" (PNGs or test rows), "prompt" or "series"."""
    cls = family_class(config["family"])
    return {"image": "image", "series": "series"}.get(cls.modality_of(config), "prompt")
