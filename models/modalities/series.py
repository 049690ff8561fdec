"""Series: one real-valued time series. Samples are lists of numbers; data are overlapping
windows that each carry `first`, the index of their first value no earlier window predicts."""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import torch

from genray.models.errors import DataError, InputError
from genray.models.modalities.base import Modality, dense, fixed_list, register
from genray.models.splits import HELD_FRACTION

WIDTH, CONTEXT = 64, 32  # values per row; leading values a row shares with the one before


def _rows(values: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of up to WIDTH values, each sharing CONTEXT leading values with the one before,
    and for each the index of its first value no earlier window covers, so that every value
    from `first` on is predicted exactly once."""
    n = len(values)
    width = min(WIDTH, n)
    starts = list(range(0, n - width + 1, width - CONTEXT))
    if starts[-1] + width < n:
        starts.append(n - width)
    rows, firsts, covered = [], [], first
    for s in starts:
        rows.append(values[s:s + width])
        firsts.append(covered - s)
        covered = s + width
    return np.stack(rows), np.asarray(firsts, dtype=np.int64)


@register
class Series(Modality):
    name = "series"
    nll_unit = "nats/value"

    def check(self, fields: dict[str, Any], config: dict) -> list[tuple[str, str]]:
        prompt = fields.get("prompt")
        if prompt is not None and not isinstance(prompt, list):
            return [("prompt", "prompt for a series model must be a list of numbers")]
        return []

    def parse_prompt(self, text: str) -> list[float]:
        try:
            return [float(v) for v in text.replace(",", " ").split()]
        except ValueError:
            raise InputError("a prompt for a series model is numbers separated by spaces or commas") from None

    def to_text(self, sample: list[float]) -> str:
        return " ".join(f"{v:.6g}" for v in sample)

    def to_tensors(self, meta: dict, batch: dict[str, np.ndarray]) -> dict:
        return {"series": torch.tensor(dense(batch["series"]), dtype=torch.float64),
                "first": torch.tensor(batch["first"])}

    def tables(self, values: np.ndarray) -> tuple[dict[str, pa.Table], dict]:
        """A series is split in time: the last tenth is test and the tenth before it val; the
        rows of each held-out segment carry the CONTEXT values before it as history that is not
        scored."""
        values = np.asarray(values, dtype=np.float64)
        if not np.isfinite(values).all():
            raise DataError("the series has missing or infinite values")
        n_held = max(8, round(HELD_FRACTION * len(values)))
        n_train = len(values) - 2 * n_held
        if n_train < 2 * CONTEXT:
            raise DataError(f"a series needs at least {2 * CONTEXT + 16} values, got {len(values)}")

        def table(vals, first):
            rows, firsts = _rows(vals, first)
            return pa.table({"series": fixed_list(rows), "first": pa.array(firsts)})

        n_val = n_train + n_held
        meta = {"modality": self.name, "length": len(values), "train_len": n_train, "val_len": n_held,
                "test_len": len(values) - n_val, "context": CONTEXT}
        return {"train": table(values[:n_train], 0), "val": table(values[n_train - CONTEXT:n_val], CONTEXT),
                "test": table(values[n_val - CONTEXT:], CONTEXT)}, meta

    def metrics(self, model, splits, meta, *, nll=None, judge=None, seed=0) -> dict:
        pred, y = model.one_step(splits["heldout"])
        return {"forecast_mse": float(((pred - y) ** 2).mean())}
