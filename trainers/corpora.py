"""Music and time-series sources that ship inside pip packages (music21, statsmodels), and a
user's own folder of scores or MIDI files. Each returns plain Python/numpy data; datasets.py
turns it into Parquet."""
from __future__ import annotations

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


def chorales() -> list[list[str]]:
    """Soprano melodies of the 371 Bach chorales in music21's corpus, as note events
    (~30 s of parsing). Melodies repeated verbatim across chorales are kept once."""
    from music21 import corpus

    pieces, seen = [], set()
    for score in corpus.chorales.Iterator(numberingSystem="riemenschneider", returnType="stream"):
        part = _soprano(score)
        if part is None:
            continue
        events = from_stream(part)
        if len(events) >= 8 and tuple(events) not in seen:
            seen.add(tuple(events))
            pieces.append(events)
    return pieces


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
