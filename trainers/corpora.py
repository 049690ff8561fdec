"""Music, time-series, photograph and paper sources that ship inside pip packages (music21,
statsmodels, scikit-image and scikit-learn, aclsum), and a user's own folder of scores or MIDI
files. Each returns plain Python/numpy data; datasets.py turns it into Parquet."""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np

from genray.models.codecs.music import from_stream

SCORE_SUFFIXES = {".mid", ".midi", ".mxl", ".musicxml", ".xml", ".krn", ".abc"}
# statsmodels data set -> (loader module, column): yearly sunspot numbers 1700-2008, and US
# quarterly CPI inflation 1959-2009 (annualised, percent).
SERIES = {"sunspots": ("sunspots", "SUNACTIVITY"), "macro": ("macrodata", "infl")}


def _soprano(score):
    """The soprano line of a chorale. Parts are chosen by name: in some chorales the first part
    is an instrument (horn, violin); a few name no part, and then the top one is the soprano."""
    parts = list(score.parts)
    named = [p for p in parts if (p.partName or "").lower().startswith("soprano")]
    if named:
        return named[0]
    if parts and all(p.partName is None for p in parts):
        return parts[0]
    return None


# Part of the cache file's name: bump it when the melodies' extraction (_soprano, from_stream) changes.
CHORALES_FORMAT = 1


def _cache_file(name: str) -> Path:
    """A machine-wide cache of what is slow to derive from a package's data ($GENRAY_CACHE, else
    $XDG_CACHE_HOME/genray, else ~/.cache/genray); `name` carries the package's version."""
    root = os.environ.get("GENRAY_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "genray")
    return Path(root) / name


@functools.lru_cache(maxsize=1)  # parsed once per process: the melodies feed two data sets
def _chorales() -> tuple[tuple[str, ...], ...]:
    """Parsed once per machine (music21's parse of 371 scores takes ~30 s), then read from the cache."""
    from importlib.metadata import version

    cache = _cache_file(f"chorales-soprano-v{CHORALES_FORMAT}-music21-{version('music21')}.json")
    try:
        pieces = json.loads(cache.read_text())
        if pieces and all(isinstance(p, list) and all(isinstance(e, str) for e in p) for p in pieces):
            return tuple(tuple(p) for p in pieces)
    except (OSError, ValueError):
        pass  # absent or damaged: parsed again and rewritten
    pieces = _parse_chorales()
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(pieces))
        os.replace(tmp, cache)  # whole or absent: concurrent first runs each write all of it
    except OSError:  # a read-only home: parsed again next time
        tmp.unlink(missing_ok=True)
    return pieces


def _parse_chorales() -> tuple[tuple[str, ...], ...]:
    from music21 import corpus

    pieces, seen = [], set()
    for score in corpus.chorales.Iterator(numberingSystem="riemenschneider", returnType="stream"):
        part = _soprano(score)
        if part is None:
            continue
        events = from_stream(part)
        if len(events) >= 8 and tuple(events) not in seen:
            seen.add(tuple(events))
            pieces.append(tuple(events))
    return tuple(pieces)


def chorales() -> list[list[str]]:
    """Soprano melodies of the 371 Bach chorales in music21's corpus, as note events
    (~30 s of parsing, once per machine). Melodies repeated verbatim across chorales are kept once."""
    return [list(p) for p in _chorales()]


def score_folder(root: Path) -> list[list[str]]:
    """The top voice of every score or MIDI file under root."""
    from music21 import converter

    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in SCORE_SUFFIXES)
    pieces = []
    for f in files:
        score = converter.parse(str(f))
        parts = getattr(score, "parts", None)
        events = from_stream(parts[0] if parts else score)
        if events:
            pieces.append(events)
    return pieces


def has_scores(root: Path) -> bool:
    return any(p.suffix.lower() in SCORE_SUFFIXES for p in root.rglob("*"))


def statsmodels_series(name: str) -> np.ndarray:
    import importlib

    module, column = SERIES[name]
    data = importlib.import_module(f"statsmodels.datasets.{module}").load_pandas().data
    return data[column].to_numpy(dtype=np.float64)


ACLSUM_SPLITS = ("train", "val", "test")


def aclsum(split: str) -> list[dict]:
    """ACLSum's papers of one split (the `aclsum` package's JSON lines, read directly: its loader
    needs a package genray does not install). Each: {"id", "title", "sentences" (abstract,
    introduction and conclusion, in order), "highlights" {aspect: 0/1 per sentence},
    "summaries" {aspect: one-sentence summary}}."""
    import importlib.util
    import json

    from genray.models.errors import DataError
    from genray.models.summarize.text import ASPECTS, SECTIONS

    spec = importlib.util.find_spec("aclsum")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("package 'aclsum' is not installed (run `make install`)")
    if split not in ACLSUM_SPLITS:
        raise DataError(f"ACLSum's splits are {ACLSUM_SPLITS}, not {split!r}")
    path = Path(next(iter(spec.submodule_search_locations))) / "dataset" / f"{split}.jsonl"
    papers = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        x = json.loads(line)
        papers.append({"id": x["id"], "title": x["title"],
                       "sentences": [s for sec in SECTIONS for s in x["sentences"][sec]],
                       "highlights": {a: [h for sec in SECTIONS for h in x["highlights"][a][sec]] for a in ASPECTS},
                       "summaries": {a: x["summary"][a] for a in ASPECTS}})
    return papers


# Photographs a style network trains on: none of the contents it is scored on (models/style/photos.py).
CROP_PHOTOS = ("rocket", "retina", "camera", "moon", "china.jpg", "flower.jpg")


def photo_crops(size: int = 64, per_photo: int = 400, seed: int = 0) -> np.ndarray:
    """(N, 3, size, size) uint8 random crops (and mirror images) of CROP_PHOTOS, each scaled so
    that its shorter side is 256 pixels (grey ones repeated to three channels)."""
    import skimage.data
    from PIL import Image
    from sklearn.datasets import load_sample_images

    bunch = load_sample_images()
    samples = {Path(f).name: im for f, im in zip(bunch.filenames, bunch.images)}
    rng = np.random.default_rng(seed)
    crops = []
    for name in CROP_PHOTOS:
        arr = samples[name] if name in samples else np.asarray(getattr(skimage.data, name)())
        im = Image.fromarray(arr)
        scale = 256 / min(im.size)
        im = im.convert("RGB").resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC)
        a = np.asarray(im).transpose(2, 0, 1)  # (3, H, W)
        for _ in range(per_photo):
            y, x = rng.integers(0, a.shape[1] - size + 1), rng.integers(0, a.shape[2] - size + 1)
            c = a[:, y:y + size, x:x + size]
            crops.append(c[:, :, ::-1] if rng.random() < 0.5 else c)
    return np.ascontiguousarray(np.stack(crops))
