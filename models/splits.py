"""Train / val / test splits, fixed and seeded, and the evaluation sampler.

The test split is sealed: training never reads it, and every choice (the published epoch, early
stopping, Tune, presets, a baseline's order or size, a benchmark's method) is made on val. Each
modality splits its own way (models/modalities/): images stratified by class, text by the tail
of each document, music by tune, series by time, ACLSum by its own papers.

`stratified_order` is the one evaluation sampler: a seeded permutation of a labelled split in
which every prefix holds the classes in equal shares (as equal as their sizes allow), so "the
first n" of it is a class-stratified sample of n. Attacks, defenses, explanations, inpainting,
the CLI's `-n` and the API's `indices` all take rows in this order.
"""
from __future__ import annotations

import math

import numpy as np

SPLITS = ("train", "val", "test")
SPLIT_SEED = 1234
HELD_FRACTION = 0.1  # of the rows (or classes' rows, or tunes, or values) for each of val and test
SAMPLE_SEED = 0


def assign(n: int, labels: np.ndarray | None = None, seed: int = SPLIT_SEED) -> np.ndarray:
    """(n,) split index per item (0 train, 1 val, 2 test): HELD_FRACTION each to val and test,
    seeded, and within every class when `labels` are given. Any n >= 3 gets at least one item in
    each split."""
    if n < 3:
        raise ValueError(f"three splits need at least 3 items, got {n}")
    rng = np.random.default_rng(seed)
    out = np.zeros(n, dtype=np.int8)
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for idx in groups:
        idx = idx[rng.permutation(len(idx))]
        k = int(round(HELD_FRACTION * len(idx)))
        out[idx[:k]] = 2
        out[idx[k:2 * k]] = 1
    for split in (2, 1):  # a set too small for the fractions: take items from the largest train group
        if not (out == split).any():
            out[np.flatnonzero(out == 0)[-1]] = split
    return out


def tail_blocks(lengths: list[int]) -> np.ndarray:
    """Split index per row of documents with `lengths` rows each, in order: each document's last
    HELD_FRACTION of rows is test and the block before it val, so that every test row's
    neighbours are val or test rows, never training ones. Documents of fewer than 3 rows train,
    unless no document has 3: then the last rows overall are val and test."""
    parts = []
    for n in lengths:
        part = np.zeros(n, dtype=np.int8)
        if n >= 3:
            k = max(1, math.ceil(HELD_FRACTION * n))
            part[n - k:] = 2
            part[n - 2 * k:n - k] = 1
        parts.append(part)
    out = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int8)
    if len(out) >= 3 and not (out == 2).any():
        out[-1], out[-2] = 2, 1
    return out


def stratified_order(labels: np.ndarray, n: int | None = None, seed: int = SAMPLE_SEED) -> np.ndarray:
    """Row indices in the evaluation order: each class shuffled within, then the classes dealt
    round-robin in a seeded order, so that every prefix is class-stratified. With `n`, the
    first n of that order."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    classes = rng.permutation(np.unique(labels))
    queues = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
    order = [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]
    order = np.asarray(order, dtype=np.int64)
    return order if n is None else order[:n]


def sample_order(rows: int, labels: np.ndarray | None = None, n: int | None = None,
                 seed: int = SAMPLE_SEED) -> np.ndarray:
    """The evaluation order of a split of `rows` rows: stratified by `labels` where there are
    any, else a seeded permutation. With `n`, the first n."""
    if labels is not None:
        return stratified_order(labels, n, seed)
    order = np.random.default_rng(seed).permutation(rows).astype(np.int64)
    return order if n is None else order[:n]
