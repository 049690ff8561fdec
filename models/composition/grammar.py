"""Chords by Roman numeral in a key, and the phrase grammar that samples progressions by function
(tonic, predominant, dominant, tonic) in phrases that end in cadences."""
from __future__ import annotations

import math
import random
from functools import lru_cache

from genray.models.composition.keys import Key

# Chord -> (its tones in semitones above the tonic, root first; the index of the tone in the bass).
CHORDS_MAJOR = {
    "I": ((0, 4, 7), 0), "I6": ((0, 4, 7), 1), "ii": ((2, 5, 9), 0), "ii6": ((2, 5, 9), 1),
    "iii": ((4, 7, 11), 0), "IV": ((5, 9, 0), 0), "IV6": ((5, 9, 0), 1), "V": ((7, 11, 2), 0),
    "V6": ((7, 11, 2), 1), "V7": ((7, 11, 2, 5), 0), "vi": ((9, 0, 4), 0), "vii°6": ((11, 2, 5), 1),
    "V/V": ((2, 6, 9), 0), "V/vi": ((4, 8, 11), 0), "V/ii": ((9, 1, 4), 0),
}
# Harmonic minor. III, IV, v and VII (melodic minor's raised sixth and natural seventh), and the
# secondary dominants in both modes, serve only to harmonise melodies that use their notes.
CHORDS_MINOR = {
    "i": ((0, 3, 7), 0), "i6": ((0, 3, 7), 1), "ii°6": ((2, 5, 8), 1), "III": ((3, 7, 10), 0),
    "iv": ((5, 8, 0), 0), "iv6": ((5, 8, 0), 1), "IV": ((5, 9, 0), 0), "v": ((7, 10, 2), 0),
    "V": ((7, 11, 2), 0), "V6": ((7, 11, 2), 1), "V7": ((7, 11, 2, 5), 0), "VI": ((8, 0, 3), 0),
    "VII": ((10, 2, 5), 0), "vii°6": ((11, 2, 5), 1), "V/iv": ((0, 4, 7), 0), "V/V": ((2, 6, 9), 0),
}
# Chord -> (its leading tone, the note that tone leads to), in semitones above the tonic: whenever
# the next chord holds that note, the leading tone must rise to it.
LEADS = {"V": (11, 0), "V6": (11, 0), "V7": (11, 0), "vii°6": (11, 0),
          "V/V": (6, 7), "V/vi": (8, 9), "V/ii": (1, 2), "V/iv": (4, 5)}
SECONDARY = {"V/V": ("V", "V7"), "V/vi": ("vi",), "V/ii": ("ii", "ii6"), "V/iv": ("iv", "iv6")}  # their goals
# Which chord may follow which, with weights: tonic -> predominant -> dominant -> tonic, plus
# the usual extensions (I6, vi, the deceptive V-vi, the plagal IV-I). Written for major; minor
# renames the chords and has no root-position ii (diminished).
_GRAMMAR = {
    "I": {"I6": 1, "ii": 0.7, "ii6": 1.2, "IV": 2, "V": 1, "V6": 0.7, "V7": 0.3, "vi": 1.4, "vii°6": 0.6},
    "I6": {"ii6": 1, "IV": 1.5, "V": 1.2, "V7": 0.5, "vii°6": 0.6, "I": 0.3},
    "ii": {"V": 2, "V7": 1.5, "vii°6": 0.5, "ii6": 0.5},
    "ii6": {"V": 2, "V7": 1.5, "vii°6": 0.5},
    "IV": {"V": 2, "V7": 1, "I": 0.8, "ii6": 0.5, "I6": 0.3, "vii°6": 0.4},
    "V": {"I": 3, "V7": 1, "vi": 0.7, "I6": 0.4},
    "V6": {"I": 1},
    "V7": {"I": 3, "vi": 0.5},
    "vi": {"ii": 0.8, "ii6": 1.2, "IV": 1.5, "I6": 0.5, "V": 0.4},
    "vii°6": {"I": 1.5, "I6": 1},
}
_MINOR_NAME = {"I": "i", "I6": "i6", "ii6": "ii°6", "IV": "iv", "vi": "VI", "ii": None}
DOMINANTS = {"V", "V6", "V7", "vii°6"}  # the key's own dominant chords
PREDOMINANTS = {"ii", "ii6", "IV", "I6"}  # what may precede a cadence's dominant (I6: the cadential tonic)
THIRD_DOUBLED_OK = {"vi", "VI", "ii6", "ii°6", "vii°6", "iv6", "IV6"}  # where doubling the third is usual


def chord_tones(key: Key, name: str) -> frozenset[int]:
    """The pitch classes of a chord, named by its Roman numeral ('V7', 'ii°6'), in a key."""
    return frozenset((key.tonic + o) % 12 for o in (CHORDS_MINOR if key.minor else CHORDS_MAJOR)[name][0])


def _minor(name: str | None) -> str | None:
    return _MINOR_NAME.get(name, name)


@lru_cache(maxsize=2)
def grammar_table(minor: bool) -> dict[str, dict[str, float]]:
    if not minor:
        return _GRAMMAR
    return {_minor(a): {_minor(b): w for b, w in nxt.items() if _minor(b)} for a, nxt in _GRAMMAR.items() if _minor(a)}


def _names(names: set[str], minor: bool) -> set[str]:
    return {n for n in (_minor(x) if minor else x for x in names) if n}


def phrase_bars(bars: int) -> list[int]:
    """Bars split into phrases of at most four, as even as they go (6 -> 3 + 3, 9 -> 3 + 3 + 3)."""
    n = math.ceil(bars / 4)
    return [bars // n + (1 if i < bars % n else 0) for i in range(n)]


def _sample_phrase(rng: random.Random, grammar: dict, k: int, first: set[str], cadence: list[set[str]]) -> list[str]:
    """k chords, each a grammatical successor of the one before, the first from `first` and the last
    ones from the cadence's sets. Sampled forward among the chords from which the cadence can still
    be reached in the chords left, so it never dead-ends."""
    cadence = cadence[-(k - 1):]
    allowed = [set(grammar)] * k
    allowed[0] = allowed[0] & first
    for i, s in enumerate(cadence):
        allowed[k - len(cadence) + i] = allowed[k - len(cadence) + i] & s
    reach = [set() for _ in range(k)]
    reach[-1] = allowed[-1]
    for t in range(k - 2, -1, -1):
        reach[t] = {c for c in allowed[t] if any(d in reach[t + 1] for d in grammar[c])}
    if not reach[0]:
        raise AssertionError(f"the grammar cannot make a phrase of {k} chords")  # a defect of the tables above
    starts = sorted(reach[0])
    seq = [rng.choices(starts, weights=[3.0 if c in ("I", "i") else 1.0 for c in starts])[0]]
    for t in range(1, k):
        options = sorted(d for d in grammar[seq[-1]] if d in reach[t])
        seq.append(rng.choices(options, weights=[grammar[seq[-1]][d] for d in options])[0])
    return seq


def progression(key: Key, bars: int, rng: random.Random) -> tuple[list[str], list[float]]:
    """Chords and their lengths (quarter notes): one per beat, and the last of each phrase for two.
    Phrases end in a half cadence (on V) or an authentic one (V-I); the last in a perfect one."""
    grammar = grammar_table(key.minor)
    pre, dom, tonic = _names(PREDOMINANTS, key.minor), _names({"V", "V7"}, key.minor), _names({"I"}, key.minor)
    chords: list[str] = []
    lengths: list[float] = []
    sizes = phrase_bars(bars)
    for i, size in enumerate(sizes):
        k = 4 * size - 1
        half = i < len(sizes) - 1 and rng.random() < 0.5
        cadence = [pre, _names({"V"}, key.minor)] if half else [pre, dom, tonic]
        # A later phrase starts on a tonic chord that follows the last phrase's end (or repeats it).
        first = tonic if not chords else {c for c in _names({"I", "I6", "vi"}, key.minor)
                                          if c in grammar[chords[-1]] or c == chords[-1]}
        chords += _sample_phrase(rng, grammar, k, first, cadence)
        lengths += [1.0] * (k - 1) + [2.0]
    return chords, lengths


