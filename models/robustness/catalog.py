"""Which attacks and defenses apply to a model, from its configuration: what its family declares
(`attacks`, `defenses` on the model class), the one place the CLI and the server consult."""
from __future__ import annotations

from genray.models.catalog import family_class

TEXT_ATTACKS = ("suffix",)  # attacks on a prompt: they take text fields, not images


def attack_methods(config: dict) -> tuple[str, ...]:
    return family_class(config["family"]).capability("attacks", config)


def defense_methods(config: dict) -> tuple[str, ...]:
    return family_class(config["family"]).capability("defenses", config)
