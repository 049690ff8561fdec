"""Data sets -> Parquet cache: splits, meta, user data, clear errors."""
import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from genray.cluster.storage import Storage
from genray.models.codecs import CharVocab
from genray.trainers.datasets import DataError, cache_key, local_arrays, prepare


@pytest.fixture()
def store(tmp_path):
    return Storage(str(tmp_path / "home"))


def test_mnist_splits_are_stratified_disjoint_and_stable(store, tmp_path):
    meta = prepare("mnist", store)
    assert meta["shape"] == [1, 28, 28] and meta["num_classes"] == 10
    assert (meta["train_rows"], meta["val_rows"], meta["test_rows"]) == (4000, 500, 500)
    splits = {s: local_arrays(meta, s, store) for s in ("train", "val", "test")}
    for s in ("val", "test"):  # the file is sorted by label: each held-out split has 50 of every digit
        assert np.bincount(splits[s]["label"].numpy(), minlength=10).tolist() == [50] * 10
    rows = {s: {bytes(x) for x in v["image"].reshape(len(v["image"]), -1).numpy()} for s, v in splits.items()}
    assert not rows["train"] & rows["test"] and not rows["val"] & rows["test"] and not rows["train"] & rows["val"]
    again = prepare("mnist", Storage(str(tmp_path / "other")))  # the same rows, built anew elsewhere
    assert np.array_equal(local_arrays(again, "test", store)["image"].numpy(), splits["test"]["image"].numpy())


def test_shakespeare_rows_decode_to_plain_text_and_cache_is_reused(store):
    meta = prepare("shakespeare", store)
    assert meta["train_rows"] > 15_000 and meta["val_rows"] > 1_000 and meta["test_rows"] > 1_000
    rows = local_arrays(meta, "test", store, limit=5)["tokens"]
    assert rows.shape == (5, meta["seq_len"])
    text = CharVocab(meta["vocab"]).decode(rows[0])
    assert "**" not in text and "#" not in text
    mtime = store.fs.get_file_info(meta["train"]).mtime
    assert prepare("shakespeare", store) == meta
    assert store.fs.get_file_info(meta["train"]).mtime == mtime


def test_user_text_file(store, tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    meta = prepare(str(path), store)
    assert meta["modality"] == "text" and set(meta["vocab"]) == set("the quick brown fox jumps over the lazy dog.")
    assert meta["train_rows"] + meta["val_rows"] + meta["test_rows"] == (len(path.read_text()) - 1) // 256
    assert meta["val_rows"] >= 1 and meta["test_rows"] >= 1


def test_user_image_folder_with_classes(store, tmp_path):
    rng = np.random.default_rng(0)
    for cls in ("cats", "dogs"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(15):
            Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    meta = prepare(str(tmp_path / "imgs"), store)
    assert meta["shape"] == [1, 12, 12] and meta["num_classes"] == 2
    assert (meta["train_rows"], meta["val_rows"], meta["test_rows"]) == (22, 4, 4)  # 2 of each class (of 15) each


def test_user_parquet_of_images(store, tmp_path):
    def png(v):
        buf = io.BytesIO()
        Image.fromarray(np.full((8, 8), v, dtype=np.uint8)).save(buf, format="PNG")
        return buf.getvalue()

    pq.write_table(pa.table({"image": [png(i) for i in range(40)], "label": [i % 4 for i in range(40)]}),
                   tmp_path / "x.parquet")
    meta = prepare(str(tmp_path / "x.parquet"), store)
    assert meta["shape"] == [1, 8, 8] and meta["num_classes"] == 4
    batch = local_arrays(meta, "train", store)
    assert batch["image"].dtype.is_floating_point is False and batch["image"].shape[1:] == (1, 8, 8)


def test_bad_data_gives_clear_errors(store, tmp_path):
    with pytest.raises(DataError, match="unknown data set"):
        prepare("no-such-set", store)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        prepare(str(tmp_path / "empty"), store)
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="expected a 'text', an 'image' or a 'value' column"):
        prepare(str(tmp_path / "bad.parquet"), store)
    (tmp_path / "tiny.txt").write_text("too short")
    with pytest.raises(DataError, match="shorter than"):
        prepare(str(tmp_path / "tiny.txt"), store)


def test_editing_a_file_inside_a_user_folder_rebuilds_its_cache(store, tmp_path):
    root = tmp_path / "imgs"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((8, 8), 10 * i, dtype=np.uint8)).save(root / cls / f"{i}.png")
    meta = prepare(str(root), store)
    key, folder_mtime = cache_key(str(root)), root.stat().st_mtime_ns
    # Rewrite one image in a class folder: the top folder's own mtime does not move.
    Image.fromarray(np.full((8, 8), 255, dtype=np.uint8)).save(root / "b" / "0.png")
    assert root.stat().st_mtime_ns == folder_mtime
    assert cache_key(str(root)) != key
    edited = prepare(str(root), store)
    assert edited["train"] != meta["train"]
    pixels = lambda m: {int(x.max()) for s in ("train", "val", "test")
                         for x in local_arrays(m, s, store)["image"]}  # noqa: E731
    assert 255 in pixels(edited) and 255 not in pixels(meta)


def test_evaluation_rows_are_a_class_stratified_prefix_of_the_test_split(store):
    """What -n and the API's indices read: the first n rows of the test split's evaluation order
    hold every digit equally (the file behind MNIST-5k is sorted by label), the same every time."""
    import posixpath
    from types import SimpleNamespace

    from genray.cluster.datacache import evaluation_rows

    meta = prepare("mnist", store)
    rec = SimpleNamespace(ref="classifier@1", metrics={"data_meta": posixpath.join(posixpath.dirname(meta["test"]),
                                                                                   "meta.json")})
    first = evaluation_rows(rec, store, "test", n=20)
    assert np.bincount(first["label"].numpy(), minlength=10).tolist() == [2] * 10
    whole = evaluation_rows(rec, store, "test")
    assert len(whole["label"]) == 500 and np.array_equal(whole["image"][:20].numpy(), first["image"].numpy())
    val = evaluation_rows(rec, store, "val", n=20)
    assert not np.array_equal(val["image"].numpy(), first["image"].numpy())


def test_parsed_chorales_are_cached_once_per_machine(tmp_path, monkeypatch):
    from genray.trainers import corpora

    melodies = (("G4/1", "A4/1"), ("C5/2",))
    parses = []
    monkeypatch.setenv("GENRAY_CACHE", str(tmp_path))
    monkeypatch.setattr(corpora, "_parse_chorales", lambda: parses.append(1) or melodies)
    corpora._chorales.cache_clear()
    try:
        assert corpora.chorales() == [list(m) for m in melodies]
        corpora._chorales.cache_clear()  # a new process: the cache file answers
        assert corpora.chorales() == [list(m) for m in melodies] and len(parses) == 1
        (cached,) = tmp_path.glob("chorales-*.json")
        for damaged in ("{truncated", "[]", "[1]"):  # parsed again and rewritten
            cached.write_text(damaged)
            corpora._chorales.cache_clear()
            assert corpora.chorales() == [list(m) for m in melodies]
        assert len(parses) == 4 and json.loads(cached.read_text()) == [list(m) for m in melodies]
    finally:
        corpora._chorales.cache_clear()
