"""The Modality interface and the helpers its Parquet conversions share."""
from __future__ import annotations

import base64
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from genray.models.errors import InputError

_MODALITIES: dict[str, "Modality"] = {}


def register(cls: type["Modality"]) -> type["Modality"]:
    _MODALITIES[cls.name] = cls()
    return cls


def get(name: str) -> "Modality":
    try:
        return _MODALITIES[name]
    except KeyError:
        raise InputError(f"unknown modality {name!r}; known: {names()}") from None


def names() -> list[str]:
    return sorted(_MODALITIES)


class Modality:
    """What one kind of data is, in every place genray meets it."""

    name: ClassVar[str]
    # Request fields this modality adds to those of every family that models it (music: wav).
    request_fields: ClassVar[frozenset[str]] = frozenset()
    # The unit of a per-example NLL for data of this modality (sequences count symbols).
    nll_unit: ClassVar[str]
    file_hint: ClassVar[str] = "FILE.txt"  # what `genray sample -o` writes

    # ---- requests ---------------------------------------------------------------------
    def check(self, fields: dict[str, Any], config: dict) -> list[tuple[str, str]]:
        """(field, message) for each request value this model cannot use. `fields` holds the
        request's set fields that apply to the model; `config` is the model's saved config."""
        return []

    def parse_prompt(self, text: str) -> Any:
        """A prompt typed on the command line, as the request field holds it."""
        return text

    # ---- samples out ------------------------------------------------------------------
    def to_json(self, sample: Any, options: dict[str, Any]) -> Any:
        """One sample as the HTTP API returns it; `options` are the request's fields."""
        return sample

    def to_text(self, sample: Any) -> str | None:
        """One sample as a line of text for a terminal, or None where it has no text form."""
        return str(sample)

    def write(self, samples: list, output: str) -> list[str]:
        """Samples written to files named after `output`; returns the paths written."""
        with open(output, "w", encoding="utf-8") as f:
            f.write("\n\n".join(self.to_text(s) for s in samples) + "\n")
        return [output]

    # ---- data in ----------------------------------------------------------------------
    def to_tensors(self, meta: dict, batch: dict[str, np.ndarray]) -> dict:
        """A batch of Parquet columns (numpy) -> the tensors the model contract expects."""
        raise NotImplementedError

    # ---- evaluation -------------------------------------------------------------------
    def metrics(self, model, splits: dict[str, dict], meta: dict, *, nll: float | None = None,
                judge=None, seed: int = 0) -> dict:
        """Held-out metrics beyond the NLL per unit (`nll`, when the model has one). `splits`
        holds the data set's "train" split and the held-out split scored ("test" or "val") under
        "heldout", as tensors; `judge` is the classifier of
        a labelled data set, where `wants_judge(meta)`."""
        return {}

    def wants_judge(self, meta: dict) -> bool:
        return False


# ---- shared helpers -------------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def fixed_list(arr: np.ndarray) -> pa.FixedSizeListArray:
    """Rows of an array as a fixed-size-list column, which Ray Data hands over as a dense tensor."""
    flat = arr.reshape(len(arr), int(np.prod(arr.shape[1:])))
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])


def dense(a: np.ndarray) -> np.ndarray:
    return np.stack(a) if a.dtype == object else a
