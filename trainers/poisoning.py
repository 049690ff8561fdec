"""Poisoning as a Ray Data transform of the training split (models/robustness/poison.py does the
poisoning itself), and the removal of rows that a defense flagged. Both run where Ray Data runs
them, batch by batch; the validation split stays clean."""
from __future__ import annotations

from typing import Callable

import numpy as np

from genray.models.modalities.base import dense
from genray.models.robustness.poison import Poison, row_keys


def _columns(batch: dict) -> dict[str, np.ndarray]:
    return {k: dense(np.asarray(v)) for k, v in batch.items()}


def _empty(batch: dict) -> bool:
    return not len(next(iter(batch.values()), ()))


def _poison_batch(batch: dict, poison: Poison, meta: dict) -> dict:
    return batch if _empty(batch) else poison(_columns(batch), meta)


def _drop_batch(batch: dict, keys: frozenset[str]) -> dict:
    if _empty(batch):
        return batch
    cols = _columns(batch)
    keep = np.array([k not in keys for k in row_keys(cols)], dtype=bool)
    return {k: v[keep] for k, v in cols.items()}


def train_transform(meta: dict, poison: Poison | None, exclude: frozenset[str] = frozenset()) -> Callable | None:
    """Dataset -> Dataset: the poisoning, then the removal of the rows named by `exclude` (their
    row_keys as poisoned), or None when there is neither."""
    if poison is None and not exclude:
        return None

    def transform(ds):
        if poison is not None:
            ds = ds.map_batches(_poison_batch, fn_kwargs={"poison": poison, "meta": meta}, batch_format="numpy")
        if exclude:
            ds = ds.map_batches(_drop_batch, fn_kwargs={"keys": exclude}, batch_format="numpy")
        return ds
    return transform


def local_training_rows(meta: dict, storage, poison: Poison | None,
                        limit: int | None = None) -> tuple[dict, np.ndarray]:
    """The training split as the run saw it (numpy columns, poisoned where the run was), and which
    rows were poisoned (bool, N), read in-process for a defense to inspect."""
    from genray.trainers.datasets import fits_in_memory, local_columns, read_order

    cols = local_columns(meta, "train", storage)
    order = read_order(len(next(iter(cols.values()))), limit, fits_in_memory(meta, storage))
    cols = {k: v[order] for k, v in cols.items()}
    if poison is None:
        return cols, np.zeros(len(next(iter(cols.values()))), dtype=bool)
    return poison(cols, meta), poison.chosen(cols, meta)
