"""Train / val / test splits and the evaluation sampler (models/splits.py), without Ray."""
import numpy as np
import pytest

from genray.models import modalities
from genray.models.splits import assign, sample_order, stratified_order, tail_blocks


def test_assign_is_stratified_seeded_and_covers_every_split():
    labels = np.repeat(np.arange(10), [100, 90, 80, 70, 60, 50, 40, 30, 20, 10])
    split = assign(len(labels), labels)
    for c in range(10):
        n = int((labels == c).sum())
        held = [int(((labels == c) & (split == s)).sum()) for s in (1, 2)]
        assert held == [round(0.1 * n)] * 2  # a tenth of every class in val, and in test
    assert np.array_equal(split, assign(len(labels), labels))  # stable across runs
    assert not np.array_equal(split, assign(len(labels), labels, seed=7))
    assert set(assign(3).tolist()) == {0, 1, 2}
    with pytest.raises(ValueError):
        assign(2)


def test_tail_blocks_keep_training_rows_away_from_test_rows():
    split = tail_blocks([40, 2, 25])
    assert len(split) == 67
    first, short, last = split[:40], split[40:42], split[42:]
    assert first.tolist() == [0] * 32 + [1] * 4 + [2] * 4 and short.tolist() == [0, 0]
    assert last.tolist() == [0] * 19 + [1] * 3 + [2] * 3
    for doc in (first, last):  # a test row's neighbours within its document: val or test, never train
        for i in np.flatnonzero(doc == 2):
            assert all(doc[j] != 0 for j in (i - 1, i + 1) if 0 <= j < len(doc))
    assert set(tail_blocks([1, 1, 1]).tolist()) == {0, 1, 2}  # too short to split each: the last rows


def test_stratified_order_balances_every_prefix():
    labels = np.repeat(np.arange(10), 50)  # sorted by label, as MNIST-5k's file is
    order = stratified_order(labels)
    assert sorted(order.tolist()) == list(range(500))
    for n in (10, 20, 50, 100):
        assert np.bincount(labels[order[:n]], minlength=10).tolist() == [n // 10] * 10
    assert np.array_equal(order, stratified_order(labels))  # seeded: the same sample every run
    assert not np.array_equal(order, stratified_order(labels, seed=1))
    uneven = np.array([0] * 30 + [1] * 3)
    assert np.bincount(uneven[stratified_order(uneven, 6)]).tolist() == [3, 3]
    plain = sample_order(100, n=10)
    assert len(set(plain.tolist())) == 10 and plain.tolist() != list(range(10))


def test_text_rows_split_by_the_tail_of_each_document():
    rng = np.random.default_rng(0)
    docs = ["".join(rng.choice(list("abcdefgh \n"), 256 * 30 + 1)) for _ in range(3)]
    tables, meta = modalities.get("text").tables(docs)
    assert [tables[s].num_rows for s in ("train", "val", "test")] == [72, 9, 9]
    train = {tuple(r) for r in tables["train"].column("tokens").to_pylist()}
    test = {tuple(r) for r in tables["test"].column("tokens").to_pylist()}
    assert not train & test


def test_series_split_in_time_and_music_by_tune():
    values = np.sin(np.arange(400) / 5.0)
    tables, meta = modalities.get("series").tables(values)
    assert (meta["train_len"], meta["val_len"], meta["test_len"]) == (320, 40, 40)
    assert set(tables) == {"train", "val", "test"}
    # 30 tunes, each in two rhythms (the same opening intervals): a tune's pieces share a split.
    rng = np.random.default_rng(0)
    names = ["C4", "D4", "E4", "F4", "G4", "A4", "B4", "C5"]
    pieces = []
    for _ in range(30):
        pitches = rng.choice(names, 12)
        pieces += [[f"{p}/1" for p in pitches], [f"{p}/0.5" for p in pitches]]
    tables, meta = modalities.get("music").tables(pieces)
    assert meta["tunes"] == 30 and (meta["val_pieces"], meta["test_pieces"]) == (6, 6)
