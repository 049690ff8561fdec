"""Constraints and objectives of a sweep, on what a trial measures of itself (trainers/loop.py
`measure`): parameter count, weights' size in bytes, and sampling latency per sample."""
from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass

from genray.models.errors import ConfigError

# What a sweep can constrain or optimise, and the direction that is better.
METRICS = {"val_nll": "min", "latency_ms": "min", "params": "min", "size_bytes": "min"}
OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_RE = re.compile(r"^\s*([a-z_]+)\s*(<=|>=|<|>)\s*([0-9.eE+-]+)\s*$")


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str
    bound: float

    @classmethod
    def parse(cls, text: str) -> "Constraint":
        m = _RE.match(text)
        if not m:
            raise ConfigError(f"constraint {text!r}: expected METRIC<BOUND (or <=, >, >=), e.g. latency_ms<5")
        metric, op, bound = m.groups()
        if metric not in METRICS or metric == "val_nll":
            raise ConfigError(f"constraint {text!r}: measured metrics are {sorted(set(METRICS) - {'val_nll'})}")
        try:
            return cls(metric, op, float(bound))
        except ValueError:
            raise ConfigError(f"constraint {text!r}: {bound!r} is not a number") from None

    def holds(self, metrics: dict) -> bool | None:
        """True or False once the metric is measured; None before."""
        value = metrics.get(self.metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return OPS[self.op](value, self.bound)

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"


def objectives(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names or len(set(names)) != len(names):
        raise ConfigError(f"objectives must be distinct names among {sorted(METRICS)}, got {names}")
    return names


def pareto_front(points: list[tuple[float, ...]]) -> list[int]:
    """Indices of the points no other point dominates (every objective minimised)."""
    def dominates(a, b):
        return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))

    return [i for i, p in enumerate(points) if not any(dominates(q, p) for j, q in enumerate(points) if j != i)]
