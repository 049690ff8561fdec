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
from typing import Sequence

import numpy as np

from genray.models.codecs.music import END, parse_event, pitch_name
from genray.models.composition.chorale import Chorale
from genray.models.composition.grammar import DOMINANTS, chord_tones, progression
from genray.models.composition.keys import KEYS, Key, parse_key
from genray.models.composition.voicing import PAIRS, RANGES, VOICES, Rules, search
from genray.models.errors import InputError

MAX_BARS = 64
MAX_MELODY = 512  # events
ATTEMPTS = 50  # progressions sampled before giving up on voicing one (the first has always been voiceable)
ARCH_PULL = 0.3  # cost per semitone between the soprano and its phrase's arch
VARIETY = 0.6  # the most seeded noise added to a voicing's cost: one progression, many settings


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
    rules = Rules(k, soprano_free=True)
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
            node = (rules.node_costs(V, name) + ARCH_PULL * np.abs(V[:, 0] - target[t])
                    + noise.uniform(0, VARIETY, len(V)))
            slots.append((V, np.full(len(V), rules.index[name]), node))
        path = search(rules, slots, grammar=False)
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
    rules = Rules(key, soprano_free=False)
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
    path = search(rules, slots, grammar=True)
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


__all__ = ["Chorale", "DOMINANTS", "KEYS", "Key", "MAX_BARS", "PAIRS", "RANGES", "VOICES", "chord_tones", "compose",
           "parse_key", "progression"]
