"""Voicings of a chord in four parts, the rules and costs of moving between them, and the
search (Viterbi over every voicing of every chord) for the smoothest voice leading that keeps them."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from genray.models.composition.grammar import (
    CHORDS_MAJOR,
    CHORDS_MINOR,
    LEADS,
    SECONDARY,
    THIRD_DOUBLED_OK,
    chord_tones,
    grammar_table,
)
from genray.models.composition.keys import Key

VOICES = ("Soprano", "Alto", "Tenor", "Bass")
RANGES = {"Soprano": (60, 79), "Alto": (55, 72), "Tenor": (48, 67), "Bass": (40, 60)}  # C4-G5, G3-C5, C3-G4, E2-C4
PAIRS = tuple((i, j) for i in range(4) for j in range(i + 1, 4))

# Soft costs, beside the leap costs per interval below (a step in the soprano costs 0.6).
REPEATED_CHORD = 1.5  # harmonising: the same chord again
OUTSIDE_GRAMMAR = 5.0  # harmonising: a move the phrase grammar never makes
SECONDARY_TO_GOAL = 0.5  # a secondary dominant into the chord it leads to
MISSING_FIFTH = 0.8  # a chord without its fifth
DOUBLED_THIRD = 1.5  # the third doubled where that is unusual
HIDDEN_PERFECT = 2.0  # hidden fifths or octaves between the outer voices

@lru_cache(maxsize=1024)
def _voicings(tonic: int, minor: bool, name: str) -> np.ndarray:
    """Every (S, A, T, B) of a chord within the ranges and spacing, voices strictly ordered, with its
    root, third (and seventh) sounding (a fifth may be left out), a leading tone (the key's, or a
    secondary dominant's) and a seventh never doubled. Rows of MIDI numbers."""
    tones, bass = (CHORDS_MINOR if minor else CHORDS_MAJOR)[name]
    pcs = [(tonic + t) % 12 for t in tones]
    leads = {(tonic + 11) % 12, (tonic + LEADS.get(name, (11, 0))[0]) % 12}

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


class Rules:
    """The chord vocabulary of one key, and the costs and hard rules of moving between voicings."""

    def __init__(self, key: Key, soprano_free: bool):
        self.key = key
        table = CHORDS_MINOR if key.minor else CHORDS_MAJOR
        self.names = list(table)
        self.index = {n: i for i, n in enumerate(self.names)}
        offsets = [table[n][0] for n in self.names]
        self.pcs = [chord_tones(key, n) for n in self.names]
        # Each chord's leading tone (-1: none), and whether each chord holds the note it leads to.
        self.lead = np.array([(key.tonic + LEADS[n][0]) % 12 if n in LEADS else -1 for n in self.names])
        self.resolves = np.array([[n in LEADS and (key.tonic + LEADS[n][1]) % 12 in self.pcs[j]
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
        grammar = grammar_table(key.minor)
        self.grammar = np.full((len(self.names),) * 2, OUTSIDE_GRAMMAR)
        np.fill_diagonal(self.grammar, REPEATED_CHORD)
        for a, nxt in grammar.items():
            total = sum(nxt.values())
            for b, w in nxt.items():
                self.grammar[self.index[a], self.index[b]] = -math.log(w / total)
        for a, goals in SECONDARY.items():
            for b in goals:
                if a in self.index and b in self.index:
                    self.grammar[self.index[a], self.index[b]] = SECONDARY_TO_GOAL

    def candidates(self, name: str) -> np.ndarray:
        return _voicings(self.key.tonic, self.key.minor, name)

    def node_costs(self, voicings: np.ndarray, name: str) -> np.ndarray:
        tones = (CHORDS_MINOR if self.key.minor else CHORDS_MAJOR)[name][0]
        pcs = voicings % 12
        third, fifth = (self.key.tonic + tones[1]) % 12, (self.key.tonic + tones[2]) % 12
        cost = MISSING_FIFTH * ~(pcs == fifth).any(1)
        if name not in THIRD_DOUBLED_OK:
            cost = cost + DOUBLED_THIRD * ((pcs == third).sum(1) > 1)
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
        cost = cost + HIDDEN_PERFECT * (((outer == 0) | (outer == 7)) & similar & (A[..., 0] > 2))
        if grammar:
            cost = cost + self.grammar[ip[:, None], iq[None, :]]
        return np.where(bad, np.inf, cost)


def search(rules: Rules, slots: list[tuple[np.ndarray, np.ndarray, np.ndarray]], grammar: bool) -> list[int] | None:
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


