"""Which attacks and defenses apply to a model, from its configuration: the one table that the
CLI and the server consult, so that no layer above models/ special-cases a family."""
from __future__ import annotations

from genray.models.registry import family_class
from genray.models.robustness.attacks import METHODS

# Evasion attacks on classifiers; for generative families, the attack their outputs invite.
GENERATIVE_ATTACKS = {"vae": ("reconstruction",), "gan": ("discriminator",)}
TEXT_ATTACKS = ("suffix",)  # character language models with embedding-level gradients
TEXT_ATTACK_FAMILIES = ("transformer", "rnn")
DEFENSES = {"vae": ("purify", "detect"), "flow": ("purify", "detect")}  # models that purify or detect


def attack_methods(config: dict) -> tuple[str, ...]:
    cls = family_class(config["family"])
    if cls.kind == "classifier":
        return METHODS
    if cls.family == "vae" and not config.get("num_classes", 10):
        return ()  # the reconstruction attack aims at a class: an unconditional VAE has none
    if cls.family in GENERATIVE_ATTACKS:
        return GENERATIVE_ATTACKS[cls.family]
    if cls.family in TEXT_ATTACK_FAMILIES and cls.modality_of(config) == "text":
        return TEXT_ATTACKS
    return ()


def defense_methods(config: dict) -> tuple[str, ...]:
    return DEFENSES.get(family_class(config["family"]).family, ())
