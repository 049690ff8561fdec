"""Four-part (SATB) chorales from the rules of tonal harmony, and four-part harmonisations of a melody.

A phrase grammar samples a chord progression by function (tonic, predominant, dominant, tonic) in
phrases of up to four bars that end in cadences, the last a perfect authentic one (V-I in root
position, the soprano on the tonic). Then a dynamic programme over every voicing of every chord
picks the smoothest voice leading that keeps the hard rules:

- ranges, spacing (S-A and A-T within an octave, T-B within a twelfth), no crossing or overlap;
- no parallel or consecutive perfect fifths, octaves or unisons between any two voices (stricter
  than music21's definition: contrary and octave-displaced motion between perfect intervals of the
  same kind is forbidden too);
- the leading tone never doubled, and rising to the tonic in whichever voice holds it, inner voices
  included (no "frustrated leading tone" exception), when a dominant moves to a chord with the tonic;
  the seventh of V7 falling by step;
- no augmented second (as spelled in the key: minor's sixth to its raised seventh), tritone, seventh
  or leap over an octave in any line the composer writes.

Soft costs prefer small motion in the inner voices, steps in the soprano along an arch per phrase,
complete chords, the root doubled, and no hidden fifths or octaves between the outer voices.

One chord sounds per beat, and a phrase's last chord for two. Harmonising a melody chooses the
chords and their voicings in one search (one chord per note, the grammar's transitions as costs),
with a wider vocabulary for the notes melodies use: melodic minor's, and secondary dominants (V/V,
V/vi, V/ii; V/iv and V/V in minor) whose own leading tones must rise. Voices are MIDI numbers; events are
written in the project's note-event format (codecs/music.py, sharps only), and scores are spelled
in the key, so that music21's interval analysis reads a fifth as a fifth.
"""
from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from genray.models.codecs.music import END, parse_event, pitch_name
from genray.models.errors import InputError

VOICES = ("Soprano", "Alto", "Tenor", "Bass")
RANGES = {"Soprano": (60, 79), "Alto": (55, 72), "Tenor": (48, 67), "Bass": (40, 60)}  # C4-G5, G3-C5, C3-G4, E2-C4
MAX_BARS = 64
MAX_MELODY = 512  # events
ATTEMPTS = 50  # progressions sampled before giving up on voicing one (the first has always been voiceable)
PAIRS = tuple((i, j) for i in range(4) for j in range(i + 1, 4))

# ---- keys ------------------------------------------------------------------------------------

_LETTERS = "CDEFGAB"
_LETTER_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_FIFTHS = {"F": -1, "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5}  # sharps in each natural major key
# Semitones above the tonic -> scale degree (0-6), which gives a pitch its letter in the key. Minor
# is harmonic minor (raised seventh) for the composer; melodic minor's sixth and natural seventh,
# and the raised notes of secondary dominants (#1, #4, #5 in major; #3, #4 in minor) and the
# remaining flats (b3, b7 in major; b2 in minor) spell the notes of melodies that use them.
_MAJOR_DEGREE = {0: 0, 1: 0, 2: 1, 3: 2, 4: 2, 5: 3, 6: 3, 7: 4, 8: 4, 9: 5, 10: 6, 11: 6}
_MINOR_DEGREE = {0: 0, 1: 1, 2: 1, 3: 2, 4: 2, 5: 3, 6: 3, 7: 4, 8: 5, 9: 5, 10: 6, 11: 6}
_KEY_NAME = re.compile(r"([A-Ga-g])([#b-]?)(?:\s+([A-Za-z]+))?")


@dataclass(frozen=True)
class Key:
    letter: str  # "C".."B"
    alter: int  # -1 flat, 0, 1 sharp
    minor: bool

    @property
    def tonic(self) -> int:
        return (_LETTER_PC[self.letter] + self.alter) % 12

    @property
    def sharps(self) -> int:
        """Sharps (negative: flats) in the key signature."""
        return _FIFTHS[self.letter] + 7 * self.alter - (3 if self.minor else 0)

    @property
    def name(self) -> str:
        return f"{self.letter}{('b', '', '#')[self.alter + 1]} {'minor' if self.minor else 'major'}"

    @property
    def music21_name(self) -> str:
        """music21's spelling: 'B-' for B-flat major, 'f#' for F-sharp minor."""
        tonic = self.letter + ("-", "", "#")[self.alter + 1]
        return tonic.lower() if self.minor else tonic

    def letter_of(self, midi: int) -> int:
        """The index in CDEFGAB of the letter a pitch is spelled with in this key."""
        degree = (_MINOR_DEGREE if self.minor else _MAJOR_DEGREE)[(midi - self.tonic) % 12]
        return (_LETTERS.index(self.letter) + degree) % 7

    def spell(self, midi: int) -> str:
        """A MIDI pitch spelled in this key, music21-style ('B-4', 'E#5', 'F##4')."""
        letter = _LETTERS[self.letter_of(midi)]
        alter = (midi - _LETTER_PC[letter] + 6) % 12 - 6
        octave = (midi - alter) // 12 - 1
        return f"{letter}{'#' * alter if alter > 0 else '-' * -alter}{octave}"


KEYS = tuple(f"{t} major" for t in ("C", "G", "D", "A", "E", "B", "F#", "F", "Bb", "Eb", "Ab", "Db")) + tuple(
    f"{t} minor" for t in ("A", "E", "B", "F#", "C#", "G#", "D", "G", "C", "F", "Bb", "Eb"))  # the 24 keys


def parse_key(name: str) -> Key:
    """'C', 'F#', 'Bb' or 'B-' (major), 'a', 'f#', 'bb' (lower case: minor), or 'A minor', 'Eb major'.
    A key needs at most seven sharps or flats in its signature."""
    m = _KEY_NAME.fullmatch(name.strip()) if isinstance(name, str) else None
    mode = (m.group(3) or "").lower() if m else ""
    if m is None or mode not in ("", "major", "minor"):
        raise InputError(f"unknown key {name!r}: write e.g. 'C', 'Bb', 'f#' (lower case: minor) or 'A minor'",
                         field="key")
    letter, acc = m.group(1), m.group(2)
    minor = mode == "minor" or (not mode and letter.islower())
    key = Key(letter.upper(), {"#": 1, "b": -1, "-": -1, "": 0}[acc], minor)
    if abs(key.sharps) > 7:
        raise InputError(f"{key.name} needs {abs(key.sharps)} {'sharps' if key.sharps > 0 else 'flats'}: "
                         "use its enharmonic twin", field="key")
    return key


# ---- chords and the phrase grammar ----------------------------------------------------------

# Chord -> (its tones in semitones above the tonic, root first; the index of the tone in the bass).
_CHORDS_MAJOR = {
    "I": ((0, 4, 7), 0), "I6": ((0, 4, 7), 1), "ii": ((2, 5, 9), 0), "ii6": ((2, 5, 9), 1),
    "iii": ((4, 7, 11), 0), "IV": ((5, 9, 0), 0), "IV6": ((5, 9, 0), 1), "V": ((7, 11, 2), 0),
    "V6": ((7, 11, 2), 1), "V7": ((7, 11, 2, 5), 0), "vi": ((9, 0, 4), 0), "vii°6": ((11, 2, 5), 1),
    "V/V": ((2, 6, 9), 0), "V/vi": ((4, 8, 11), 0), "V/ii": ((9, 1, 4), 0),
}
# Harmonic minor. III, IV, v and VII (melodic minor's raised sixth and natural seventh), and the
# secondary dominants in both modes, serve only to harmonise melodies that use their notes.
_CHORDS_MINOR = {
    "i": ((0, 3, 7), 0), "i6": ((0, 3, 7), 1), "ii°6": ((2, 5, 8), 1), "III": ((3, 7, 10), 0),
    "iv": ((5, 8, 0), 0), "iv6": ((5, 8, 0), 1), "IV": ((5, 9, 0), 0), "v": ((7, 10, 2), 0),
    "V": ((7, 11, 2), 0), "V6": ((7, 11, 2), 1), "V7": ((7, 11, 2, 5), 0), "VI": ((8, 0, 3), 0),
    "VII": ((10, 2, 5), 0), "vii°6": ((11, 2, 5), 1), "V/iv": ((0, 4, 7), 0), "V/V": ((2, 6, 9), 0),
}
# Chord -> (its leading tone, the note that tone leads to), in semitones above the tonic: whenever
# the next chord holds that note, the leading tone must rise to it.
_LEADS = {"V": (11, 0), "V6": (11, 0), "V7": (11, 0), "vii°6": (11, 0),
          "V/V": (6, 7), "V/vi": (8, 9), "V/ii": (1, 2), "V/iv": (4, 5)}
_SECONDARY = {"V/V": ("V", "V7"), "V/vi": ("vi",), "V/ii": ("ii", "ii6"), "V/iv": ("iv", "iv6")}  # their goals
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
_THIRD_DOUBLED_OK = {"vi", "VI", "ii6", "ii°6", "vii°6", "iv6", "IV6"}  # where doubling the third is usual


def chord_tones(key: Key, name: str) -> frozenset[int]:
    """The pitch classes of a chord, named by its Roman numeral ('V7', 'ii°6'), in a key."""
    return frozenset((key.tonic + o) % 12 for o in (_CHORDS_MINOR if key.minor else _CHORDS_MAJOR)[name][0])


def _minor(name: str | None) -> str | None:
    return _MINOR_NAME.get(name, name)


@lru_cache(maxsize=2)
def _grammar(minor: bool) -> dict[str, dict[str, float]]:
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
    grammar = _grammar(key.minor)
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


# ---- voicings and the rules between them -------------------------------------------------------

@lru_cache(maxsize=1024)
def _voicings(tonic: int, minor: bool, name: str) -> np.ndarray:
    """Every (S, A, T, B) of a chord within the ranges and spacing, voices strictly ordered, with its
    root, third (and seventh) sounding (a fifth may be left out), a leading tone (the key's, or a
    secondary dominant's) and a seventh never doubled. Rows of MIDI numbers."""
    tones, bass = (_CHORDS_MINOR if minor else _CHORDS_MAJOR)[name]
    pcs = [(tonic + t) % 12 for t in tones]
    leads = {(tonic + 11) % 12, (tonic + _LEADS.get(name, (11, 0))[0]) % 12}

    def notes(voice: str) -> list[int]:
        lo, hi = RANGES[voice]
        return [m for m in range(lo, hi + 1) if m % 12 in pcs]

    rows = []
    for b in notes("Bass"):
        if b % 12 != pcs[bass]:
            continue
        for t in (t for t in notes("Tenor") if b < t <= b + 19):
            for a in (a for a in notes("Alto") if t < a <= t + 12):
                for s in (s for s in notes("Soprano") if a < s <= a + 12):
                    have = [s % 12, a % 12, t % 12, b % 12]
                    if pcs[1] not in have or pcs[0] not in have or any(have.count(x) > 1 for x in leads):
                        continue
                    if len(pcs) == 4 and have.count(pcs[3]) != 1:
                        continue
                    rows.append((s, a, t, b))
    out = np.array(rows, dtype=np.int64).reshape(-1, 4)
    out.flags.writeable = False
    return out


def _leap_costs(soprano_free: bool) -> np.ndarray:
    """Cost of a move of |d| semitones (index 13: more than an octave) per voice; inf: forbidden
    (tritones, sevenths, more than an octave). The soprano likes steps and some variety, the inner
    voices stay put, the bass may leap by fourths and fifths."""
    inf = np.inf
    s = [1.0, 0, 0, 0.6, 0.6, 1.5, inf, 2.5, 3.5, 3.5, inf, inf, 4, inf]
    inner = [0, 0.2, 0.4, 0.9, 1.2, 2, inf, 2.5, 3.5, 4, inf, inf, 5, inf]
    b = [0.6, 0.3, 0.3, 0.5, 0.5, 0.4, inf, 0.4, 1.2, 1.5, inf, inf, 0.8, inf]
    return np.array([s if soprano_free else [0.0] * 14, inner, inner, b])


class _Rules:
    """The chord vocabulary of one key, and the costs and hard rules of moving between voicings."""

    def __init__(self, key: Key, soprano_free: bool):
        self.key = key
        table = _CHORDS_MINOR if key.minor else _CHORDS_MAJOR
        self.names = list(table)
        self.index = {n: i for i, n in enumerate(self.names)}
        offsets = [table[n][0] for n in self.names]
        self.pcs = [chord_tones(key, n) for n in self.names]
        # Each chord's leading tone (-1: none), and whether each chord holds the note it leads to.
        self.lead = np.array([(key.tonic + _LEADS[n][0]) % 12 if n in _LEADS else -1 for n in self.names])
        self.resolves = np.array([[n in _LEADS and (key.tonic + _LEADS[n][1]) % 12 in self.pcs[j]
                                   for j in range(len(self.names))] for n in self.names])
        self.seventh_chord = np.array([len(tones) == 4 for tones in offsets])
        self.fourth = (key.tonic + 5) % 12
        # second[a, b]: from pitch class a up three semitones to b is an augmented second in this key's spelling
        letter = np.array([key.letter_of(pc) for pc in range(12)])
        pcs = np.arange(12)
        self.second = ((pcs[None, :] - pcs[:, None]) % 12 == 3) & ((letter[None, :] - letter[:, None]) % 7 == 1)
        self.leaps = _leap_costs(soprano_free)
        self.free = slice(0 if soprano_free else 1, 4)  # the voices whose lines the composer writes
        # Chord-to-chord costs for harmonising: -log of the grammar's transition probabilities;
        # a repeated chord or a move outside the grammar costs more but is possible.
        grammar = _grammar(key.minor)
        self.grammar = np.full((len(self.names),) * 2, 5.0)
        np.fill_diagonal(self.grammar, 1.5)
        for a, nxt in grammar.items():
            total = sum(nxt.values())
            for b, w in nxt.items():
                self.grammar[self.index[a], self.index[b]] = -math.log(w / total)
        for a, goals in _SECONDARY.items():
            for b in goals:
                if a in self.index and b in self.index:
                    self.grammar[self.index[a], self.index[b]] = 0.5

    def candidates(self, name: str) -> np.ndarray:
        return _voicings(self.key.tonic, self.key.minor, name)

    def node_costs(self, voicings: np.ndarray, name: str) -> np.ndarray:
        tones = (_CHORDS_MINOR if self.key.minor else _CHORDS_MAJOR)[name][0]
        pcs = voicings % 12
        third, fifth = (self.key.tonic + tones[1]) % 12, (self.key.tonic + tones[2]) % 12
        cost = 0.8 * ~(pcs == fifth).any(1)
        if name not in _THIRD_DOUBLED_OK:
            cost = cost + 1.5 * ((pcs == third).sum(1) > 1)
        return cost

    def transition(self, P: np.ndarray, ip: np.ndarray, Q: np.ndarray, iq: np.ndarray, grammar: bool) -> np.ndarray:
        """(len(P), len(Q)) costs of moving from voicing P[i] (chord ip[i]) to Q[j] (chord iq[j]); inf
        where a hard rule is broken."""
        M = Q[None, :, :] - P[:, None, :]  # each voice's motion
        A = np.minimum(np.abs(M), 13)
        cost = sum(self.leaps[v][A[..., v]] for v in range(4))
        bad = ~np.isfinite(cost)
        for i, j in PAIRS:  # parallel and consecutive perfect intervals, by pitch class (octaves included)
            a, b = (P[:, i] - P[:, j]) % 12, (Q[:, i] - Q[:, j]) % 12
            same = (a[:, None] == b[None, :]) & ((a == 0) | (a == 7))[:, None]
            bad |= same & ((M[..., i] != 0) | (M[..., j] != 0))
        for u in range(3):  # overlap: no voice moves past where its neighbour just was
            bad |= (Q[None, :, u + 1] > P[:, None, u]) | (Q[None, :, u] < P[:, None, u + 1])
        pp, pq = P[:, None, :] % 12, Q[None, :, :] % 12
        resolve = self.resolves[ip[:, None], iq[None, :]]
        bad |= resolve & ((pp == self.lead[ip][:, None, None]) & (M != 1)).any(-1)
        bad |= self.seventh_chord[ip][:, None] & ((pp == self.fourth) & (M != -1) & (M != -2)).any(-1)
        aug = ((M == 3) & self.second[pp, pq]) | ((M == -3) & self.second[pq, pp])  # e.g. minor's 6 to raised 7
        bad |= aug[..., self.free].any(-1)
        # Hidden fifths and octaves between the outer voices (similar motion into a perfect interval
        # with a leap in the soprano): allowed, but avoided.
        outer = ((Q[:, 0] - Q[:, 3]) % 12)[None, :]
        similar = (np.sign(M[..., 0]) == np.sign(M[..., 3])) & (M[..., 0] != 0)
        cost = cost + 2.0 * (((outer == 0) | (outer == 7)) & similar & (A[..., 0] > 2))
        if grammar:
            cost = cost + self.grammar[ip[:, None], iq[None, :]]
        return np.where(bad, np.inf, cost)


def _search(rules: _Rules, slots: list[tuple[np.ndarray, np.ndarray, np.ndarray]], grammar: bool) -> list[int] | None:
    """Viterbi over the slots' candidate voicings (voicings, chord ids, own costs): the cheapest
    sequence that breaks no hard rule, as row indices, or None if there is none."""
    if any(not len(V) for V, _, _ in slots):
        return None
    V, ids, node = slots[0]
    cost, back = node.astype(float), []
    for Vn, idn, noden in slots[1:]:
        total = cost[:, None] + rules.transition(V, ids, Vn, idn, grammar)
        arg = total.argmin(0)
        cost = total[arg, np.arange(len(Vn))] + noden
        back.append(arg)
        V, ids = Vn, idn
    if not len(cost) or not np.isfinite(cost.min()):
        return None
    path = [int(cost.argmin())]
    for arg in reversed(back):
        path.append(int(arg[path[-1]]))
    return path[::-1]


# ---- chorales -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Chorale:
    """Four voices of note events, aligned event by event, and the chord under each (None under a rest)."""
    key: Key
    voices: tuple[tuple[str, ...], ...]  # Soprano, Alto, Tenor, Bass
    chords: tuple[str | None, ...]

    def events(self) -> dict[str, list[str]]:
        return {v: list(evs) for v, evs in zip(VOICES, self.voices)}

    def pitches(self) -> list[tuple[int, int, int, int] | None]:
        """(S, A, T, B) as MIDI numbers at each chord; None at a rest."""
        out = []
        for col in zip(*self.voices):
            parsed = [parse_event(tok) for tok in col]
            out.append(None if parsed[0][0] is None else tuple(p[0] for p in parsed))
        return out

    def to_stream(self, bpm: float = 72.0):
        """A music21 Score with parts Soprano, Alto, Tenor and Bass, in 4/4, spelled in the key."""
        from music21 import key, meter, note, stream, tempo

        score = stream.Score()
        for i, (voice, evs) in enumerate(zip(VOICES, self.voices)):
            part = stream.Part(id=voice)
            part.partName = voice
            if i == 0:
                part.append(tempo.MetronomeMark(number=bpm))
            part.append(key.Key(self.key.music21_name))
            part.append(meter.TimeSignature("4/4"))
            for tok in evs:
                midi, ql = parse_event(tok)
                part.append(note.Rest(quarterLength=ql) if midi is None
                            else note.Note(self.key.spell(midi), quarterLength=ql))
            score.insert(0, part)
        return score

    def to_midi(self, bpm: float = 72.0) -> bytes:
        from music21 import midi

        return midi.translate.streamToMidiFile(self.to_stream(bpm)).writestr()


def _contour(lengths: list[float], rng: random.Random) -> list[float]:
    """A soprano pitch to aim at for each chord: an arch over each phrase from G4 up to a seeded peak
    and back, so that the cheapest voice leading still has a melody rather than hovering on one note."""
    out, start = [], 0
    for end in [i for i, ql in enumerate(lengths) if ql > 1]:  # each phrase ends on its long chord
        peak, n = rng.choice((4, 6, 8, 10)), end - start
        out += [67 + peak * math.sin(math.pi * i / max(1, n)) for i in range(n + 1)]
        start = end + 1
    return out


def compose(key: str, bars: int, seed: int | None = None, melody: Sequence[str] | str | None = None) -> Chorale:
    """A chorale of `bars` bars of 4/4 in `key`; the same (key, bars, seed) gives the same chorale.
    With a melody (soprano events, e.g. 'G4/1 A4/0.5 ...'), a harmonisation of it instead: one
    chord per note, the soprano exactly as given; then the melody sets the length and bars is only
    checked."""
    k = parse_key(key)
    if isinstance(bars, bool) or not isinstance(bars, int) or not 1 <= bars <= MAX_BARS:
        raise InputError(f"bars must be a whole number from 1 to {MAX_BARS}, not {bars!r}", field="bars")
    rng = random.Random(seed)
    if melody is not None:
        return _harmonise(k, melody)
    rules = _Rules(k, soprano_free=True)
    noise = np.random.default_rng(rng.getrandbits(64))
    for _ in range(ATTEMPTS):
        chords, lengths = progression(k, bars, rng)
        target = _contour(lengths, rng)
        slots = []
        for t, name in enumerate(chords):
            V = rules.candidates(name)
            if t == len(chords) - 1:  # a perfect authentic cadence: the soprano on the tonic
                V = V[V[:, 0] % 12 == k.tonic]
            # A soprano near its arch, and seeded noise so that one progression has many settings.
            node = rules.node_costs(V, name) + 0.3 * np.abs(V[:, 0] - target[t]) + noise.uniform(0, 0.6, len(V))
            slots.append((V, np.full(len(V), rules.index[name]), node))
        path = _search(rules, slots, grammar=False)
        if path is not None:
            rows = [slots[t][0][i] for t, i in enumerate(path)]
            voices = tuple(tuple(f"{pitch_name(int(r[v]))}/{ql:g}" for r, ql in zip(rows, lengths)) for v in range(4))
            return Chorale(k, voices, tuple(chords))
    raise RuntimeError(f"no voicing found for {ATTEMPTS} progressions in {k.name}")  # a defect, not bad input


def _parse_melody(melody: Sequence[str] | str) -> list[tuple[str, int | None, str]]:
    """(token, MIDI or None for a rest, duration text) for each event up to the end mark."""
    toks = melody.split() if isinstance(melody, str) else list(melody)
    toks = toks[:toks.index(END)] if END in toks else toks
    if len(toks) > MAX_MELODY:
        raise InputError(f"the melody has {len(toks)} events; at most {MAX_MELODY} are harmonised", field="melody")
    notes = []
    lo, hi = RANGES["Soprano"]
    for tok in toks:
        try:
            parsed = parse_event(tok)
        except (ValueError, TypeError) as e:
            raise InputError(f"bad melody event {tok!r}: {e}", field="melody") from None
        midi, _ = parsed
        if midi is not None and not lo <= midi <= hi:
            raise InputError(f"melody note {tok} is outside the soprano's range {pitch_name(lo)}-{pitch_name(hi)}",
                             field="melody")
        notes.append((tok, midi, tok.partition("/")[2]))
    if not any(m is not None for _, m, _ in notes):
        raise InputError("the melody has no notes", field="melody")
    return notes


def _harmonise(key: Key, melody: Sequence[str] | str) -> Chorale:
    notes = _parse_melody(melody)
    rules = _Rules(key, soprano_free=False)
    tonic_chord = rules.names[0]  # "I" or "i"
    sounding = [(tok, m) for tok, m, _ in notes if m is not None]
    slots = []
    for t, (tok, m) in enumerate(sounding):
        names = [n for n in rules.names if m % 12 in rules.pcs[rules.index[n]]]
        if not names:
            raise InputError(f"melody note {tok} is in no chord of {key.name}", field="melody")
        if t == len(sounding) - 1 and tonic_chord in names:
            names = [tonic_chord]  # end on the tonic chord in root position where the melody allows
        parts = []
        for n in names:
            V = rules.candidates(n)
            V = V[V[:, 0] == m]
            # Primary chords are the plainest harmonisation; the melodic-minor and mediant chords the least.
            prior = {"I": 0, "i": 0, "IV": 0.3, "iv": 0.3, "V": 0.3, "V7": 0.5, "I6": 0.4, "i6": 0.4}.get(n, 0.7)
            if n in ("iii", "III", "v", "VII") or "/" in n or (key.minor and n == "IV"):
                prior = 1.5
            if t == 0 and n != tonic_chord:
                prior += 1.5
            parts.append((V, np.full(len(V), rules.index[n]), rules.node_costs(V, n) + prior))
        slots.append(tuple(np.concatenate(x) for x in zip(*parts)))
    path = _search(rules, slots, grammar=True)
    if path is None:
        raise InputError(f"no harmonisation of this melody in {key.name} keeps the voice-leading rules "
                         "(parallel fifths and octaves, ranges, leading tone)", field="melody")
    chosen = iter([(slots[t][0][i], rules.names[slots[t][1][i]]) for t, i in enumerate(path)])
    voices: list[list[str]] = [[], [], [], []]
    chords: list[str | None] = []
    for tok, m, dur in notes:
        if m is None:
            for v in voices:
                v.append(tok)
            chords.append(None)
            continue
        row, name = next(chosen)
        voices[0].append(tok)
        for v in range(1, 4):
            voices[v].append(f"{pitch_name(int(row[v]))}/{dur}")
        chords.append(name)
    return Chorale(key, tuple(tuple(v) for v in voices), tuple(chords))


__all__ = ["Chorale", "KEYS", "Key", "MAX_BARS", "RANGES", "VOICES", "chord_tones", "compose", "parse_key",
           "progression"]
