"""Reading the data cache that trainers/datasets.py writes under the storage root: a prepared
data set's splits as numpy columns or model-ready tensors, with pyarrow alone. Serving and the
defenses read held-out rows through it, without the training layer."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genray.cluster.storage import Storage
from genray.models import modalities
from genray.models.errors import DataError
from genray.models.splits import SAMPLE_SEED, sample_order


def to_tensors(meta: dict, batch: dict[str, np.ndarray]) -> dict:
    """A batch of columns (dict of numpy) -> the tensors the model contract expects."""
    return modalities.get(meta["modality"]).to_tensors(meta, batch)


def local_columns(meta: dict, split: str, storage: Storage, limit: int | None = None) -> dict[str, np.ndarray]:
    """A split as numpy columns, as Ray Data batches hold them."""
    table = pq.read_table(meta[split], filesystem=storage.fs)
    if limit:
        table = table.slice(0, limit)
    cols = {}
    for c in table.column_names:
        col = table.column(c).combine_chunks()
        fixed = pa.types.is_fixed_size_list(col.type)
        cols[c] = col.flatten().to_numpy().reshape(len(col), -1) if fixed else col.to_numpy()
    return cols


def local_arrays(meta: dict, split: str, storage: Storage, limit: int | None = None) -> dict:
    """A split as in-memory tensors (serving, benchmarks, evaluation, tests)."""
    return to_tensors(meta, local_columns(meta, split, storage, limit))


def trained_on(rec, split: str, storage: Storage, limit: int | None = None) -> dict:
    """A split of the data set registry model `rec` was trained on, as tensors."""
    path = rec.metrics.get("data_meta")
    if not path or not storage.exists(path):
        raise DataError(f"the data {rec.ref} was trained on is not in the data cache of {storage.uri}")
    return local_arrays(storage.read_json(path), split, storage, limit)


def evaluation_rows(rec, storage: Storage, split: str = "test", n: int | None = None,
                    seed: int = SAMPLE_SEED) -> dict:
    """The held-out `split` of the data `rec` was trained on, as tensors in the evaluation order
    (models/splits.sample_order: class-stratified prefixes where rows have labels, else a seeded
    permutation), the first n of it with `n`. Attacks, defenses, explanations, inpainting, the
    CLI's -n and the API's `indices` all read rows this way: row i is the i-th of this order."""
    path = rec.metrics.get("data_meta")
    if not path or not storage.exists(path):
        raise DataError(f"the data {rec.ref} was trained on is not in the data cache of {storage.uri}")
    meta = storage.read_json(path)
    if split not in meta:
        raise DataError(f"the data cache of {rec.ref}'s data set has no {split!r} split: prepare it again")
    return ordered_rows(meta, split, storage, n, seed)


def ordered_rows(meta: dict, split: str, storage: Storage, n: int | None = None, seed: int = SAMPLE_SEED) -> dict:
    """A prepared data set's `split` as tensors in the evaluation order, the first n with `n`."""
    cols = local_columns(meta, split, storage)
    order = sample_order(len(next(iter(cols.values()))), cols.get("label"), n, seed)
    return to_tensors(meta, {k: v[order] for k, v in cols.items()})
