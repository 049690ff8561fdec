"""Which explanation methods apply to a model, from its configuration: what its family declares
(`explanations` on the model class), the one place the CLI and the server consult."""
from __future__ import annotations

from genray.models.catalog import family_class
from genray.models.explain.methods import METHODS


def explain_methods(config: dict) -> tuple[str, ...]:
    kinds = family_class(config["family"]).capability("explanations", config)
    return tuple(m for k in kinds for m in (METHODS if k == "attribution" else (k,)))


def input_kind(config: dict) -> str:
    """What a model's explanation takes: "image" (PNGs or test rows), "prompt" or "series"."""
    cls = family_class(config["family"])
    return {"image": "image", "series": "series"}.get(cls.modality_of(config), "prompt")


def global_input(config: dict) -> str | None:
    """Where pdp and traversal start: "image" (a model that encodes images to its latent),
    "series" (a forecaster's history), or None (latents drawn from the prior, by seed)."""
    if input_kind(config) == "series":
        return "series"
    return "image" if family_class(config["family"]).encodes else None


def scores_images(config: dict) -> bool:
    """The model judges images itself (a GAN's discriminator): its explanations may be of its own
    samples, test rows are explained under their own class, and pdp reads it without a classifier."""
    return family_class(config["family"]).scores_images
