"""Search spaces: the plain data a family declares (models/, no Ray), a user's overrides of it, and
their translation into Ray Tune's domains.

    {"lr": ("loguniform", 1e-4, 1e-2), "n_layer": ("int", 1, 4), "cell": ("choice", ["lstm", "gru"])}

On the command line one setting is NAME=KIND:ARGS (`lr=loguniform:1e-4:3e-3`,
`n_embd=choice:64,96,128`) or NAME=VALUE to fix it; a YAML or JSON file maps names to either form.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

from genray.models.errors import ConfigError
from genray.trainers.config import TrainConfig

KINDS = ("uniform", "loguniform", "int", "choice")
TRAINING = frozenset(f.name for f in dataclasses.fields(TrainConfig))


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _number(v):
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return v
    return v


def check(name: str, dim) -> tuple:
    """One dimension as a tuple (kind, ...), checked; a bare value becomes a one-value choice."""
    if isinstance(dim, str) and ":" in dim and dim.split(":", 1)[0] in KINDS:
        kind, _, args = dim.partition(":")
        dim = (kind, [_value(v) for v in args.split(",") if v.strip()]) if kind == "choice" else \
            (kind, *[_value(v) for v in args.split(":")])
    if not isinstance(dim, (list, tuple)) or not dim or dim[0] not in KINDS:
        return ("choice", [dim])
    kind = dim[0]
    if kind != "choice":  # YAML reads 1e-4 (no dot) as a string
        dim = (kind, *[_number(v) for v in dim[1:]])
    if kind == "choice":
        if len(dim) != 2 or not isinstance(dim[1], (list, tuple)) or not dim[1]:
            raise ConfigError(f"search space {name!r}: choice takes a non-empty list of values, got {list(dim)}")
        return ("choice", list(dim[1]))
    if len(dim) != 3 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in dim[1:]):
        raise ConfigError(f"search space {name!r}: {kind} takes two numbers (low, high), got {list(dim)}")
    low, high = dim[1:]
    if not low < high or (kind == "loguniform" and low <= 0):
        raise ConfigError(f"search space {name!r}: need low < high{' and low > 0' if kind == 'loguniform' else ''}")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise ConfigError(f"search space {name!r}: int bounds must be integers")
    return (kind, low, high)


def parse(setting: str) -> tuple[str, tuple]:
    """'lr=loguniform:1e-4:3e-3' -> ("lr", ("loguniform", 1e-4, 3e-3))."""
    name, eq, dim = setting.partition("=")
    if not eq or not name:
        raise ConfigError(f"--space expects NAME=KIND:ARGS or NAME=VALUE, got {setting!r}")
    return name, check(name, dim if ":" in dim else _value(dim))


def load(path: str) -> dict[str, tuple]:
    """A space from a YAML or JSON file mapping names to [kind, ...], 'kind:args' or a fixed value."""
    text = Path(path).read_text()
    if path.endswith((".yaml", ".yml")):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a search space file maps setting names to dimensions")
    return {name: check(name, dim) for name, dim in data.items()}


def resolve(default: dict, overrides: dict) -> dict[str, tuple]:
    """The family's default space with the user's dimensions on top, every one checked."""
    return {name: check(name, dim) for name, dim in {**default, **overrides}.items()}


def split(params: dict) -> tuple[dict, dict]:
    """A sampled configuration -> (architecture settings, training settings)."""
    model = {k: v for k, v in params.items() if k not in TRAINING}
    return model, {k: v for k, v in params.items() if k in TRAINING}


def to_tune(space: dict[str, tuple]) -> dict:
    from ray import tune

    def domain(dim):
        kind = dim[0]
        if kind == "choice":
            return tune.choice(dim[1])
        if kind == "int":
            return tune.randint(int(dim[1]), int(dim[2]) + 1)  # inclusive of high
        return (tune.loguniform if kind == "loguniform" else tune.uniform)(dim[1], dim[2])

    return {name: domain(dim) for name, dim in space.items()}


def grid_values(dim: tuple, points: int = 3) -> list:
    """The values a grid search tries: a choice's values, or `points` spread over a range
    (geometrically for loguniform)."""
    kind = dim[0]
    if kind == "choice":
        return list(dim[1])
    low, high = dim[1], dim[2]
    if kind == "int":
        return sorted({round(low + (high - low) * i / (points - 1)) for i in range(points)})
    if kind == "loguniform":
        return [math.exp(math.log(low) + (math.log(high) - math.log(low)) * i / (points - 1)) for i in range(points)]
    return [low + (high - low) * i / (points - 1) for i in range(points)]


def to_grid(space: dict[str, tuple], points: int = 3) -> tuple[dict, int]:
    """Tune's grid over the space, and the number of configurations in it."""
    from ray import tune

    grid = {name: tune.grid_search(grid_values(dim, points)) for name, dim in space.items()}
    return grid, math.prod(len(grid_values(dim, points)) for dim in space.values())


def mutations(space: dict[str, tuple]) -> dict:
    """What PBT may perturb: the learning rate, if it varies. An architecture cannot change under a
    restored checkpoint, and the loop re-applies only the lr over a restored optimizer's state."""
    dim = space.get("lr")
    return {} if dim is None or (dim[0] == "choice" and len(dim[1]) == 1) else {"lr": to_tune({"lr": dim})["lr"]}
