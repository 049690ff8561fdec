"""Statistics of melodies that tell a set of them from another: pitch-class histograms (in their
keys, and sorted so that any key compares), empty bars, pitch range and note lengths, in the
spirit of Yang & Lerch's (2018) objective evaluation of generated music."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from genray.models.codecs.music import DURATIONS, event, parse_event

Melody = Sequence[str]


def notes(melody: Melody) -> list[tuple[int | None, float]]:
    return [e for e in map(parse_event, melody) if e is not None]


def pitch_classes(melody: Melody) -> np.ndarray:
    """(12,) share of the sounding time in each pitch class (zeros for a silent melody)."""
    h = np.zeros(12)
    for midi, ql in notes(melody):
        if midi is not None:
            h[midi % 12] += ql
    return h / h.sum() if h.sum() else h


def empty_bars(melody: Melody, bar: float = 4.0) -> float:
    """The share of its bars (of `bar` quarter notes) in which no note sounds."""
    t, sounding = 0.0, set()
    for midi, ql in notes(melody):
        if midi is not None:
            sounding.update(range(int(t // bar), int(np.ceil((t + ql) / bar))))
        t += ql
    bars = max(1, int(np.ceil(t / bar)))
    return 1 - len(sounding & set(range(bars))) / bars


def pitch_range(melody: Melody) -> int:
    pitches = [m for m, _ in notes(melody) if m is not None]
    return max(pitches) - min(pitches) if pitches else 0


def note_lengths(melody: Melody) -> np.ndarray:
    """(len(DURATIONS),) share of the notes of each length."""
    h = np.zeros(len(DURATIONS))
    for midi, ql in notes(melody):
        if midi is not None:
            h[DURATIONS.index(ql) if ql in DURATIONS else int(np.argmin([abs(d - ql) for d in DURATIONS]))] += 1
    return h / h.sum() if h.sum() else h


def _tv(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation distance of two distributions: 0 (equal) to 1 (disjoint)."""
    return float(0.5 * np.abs(a - b).sum())


def compare(melodies: Sequence[Melody], reference: Sequence[Melody]) -> dict[str, float]:
    """How far a set of melodies is from a reference set, and its own empty-bar rate and range.

    pitch_class_distance: total variation between the two sets' mean sorted pitch-class
    histograms (key-invariant: how tonal, not in which key); pitch_class_key_distance: the same
    on the unsorted histograms (keys too); note_length_distance: the same on note lengths."""
    def mean(f, ms):
        return np.mean([f(m) for m in ms], axis=0)

    def ranked(m):
        return np.sort(pitch_classes(m))[::-1]

    return {"pitch_class_distance": _tv(mean(ranked, melodies), mean(ranked, reference)),
            "pitch_class_key_distance": _tv(mean(pitch_classes, melodies), mean(pitch_classes, reference)),
            "note_length_distance": _tv(mean(note_lengths, melodies), mean(note_lengths, reference)),
            "empty_bar_rate": float(np.mean([empty_bars(m) for m in melodies])),
            "pitch_range": float(np.mean([pitch_range(m) for m in melodies]))}


def uniform_random(n: int, like: Sequence[Melody], low: int = 60, high: int = 81, seed: int = 0) -> list[list[str]]:
    """n melodies of uniformly random pitches in [low, high], with the rhythms of melodies drawn
    from `like`: only the pitches differ from theirs."""
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.integers(0, len(like), n):
        out.append([event(None if midi is None else int(rng.integers(low, high + 1)), ql)
                    for midi, ql in notes(like[i])])
    return out


def first_bars(melody: Melody, bars: int, bar: float = 4.0) -> list[str]:
    """The melody's opening `bars` bars (a note over the end is shortened to it)."""
    out, t, end = [], 0.0, bars * bar
    for midi, ql in notes(melody):
        if t >= end:
            break
        out.append(event(midi, min(ql, end - t)))
        t += ql
    return out
