"""A rule checker for four-part chorales, on music21 scores, so that the composer's chorales and
Bach's are scored the same way.

The four voices are chosen by part name (Soprano, Alto, Tenor, Bass; a score of four unnamed parts
is read top down) and aligned on the union of their onsets: at each onset every voice sounds the
note it is holding (or nothing, in a rest). Between consecutive onsets, each pair of voices is a
music21 VoiceLeadingQuartet, and parallel fifths and octaves are music21's: the same perfect
interval (compounds included) before and after, both voices moving, in similar or contrary motion.
Intervals are read as spelled, so a score must be spelled in its key (Chorale.to_stream is).

Voice ranges are the checker's own, not the composer's: the ranges commonly taught for four-part
writing (soprano C4-G5, alto G3-D5, tenor C3-G4, bass E2-D4; as in Fiveable's study guide "Four-part
writing basics" for tonal composition, which follows the usual harmony textbooks), so that the
composer is not scored against the limits it writes to.
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass

from genray.models.composition.theory import PAIRS, VOICES, Key, parse_key

# MIDI numbers: C4-G5, G3-D5, C3-G4, E2-D4.
CHECKED_RANGES = {"Soprano": (60, 79), "Alto": (55, 74), "Tenor": (48, 67), "Bass": (40, 62)}


@dataclass(frozen=True)
class Report:
    verticalities: int  # onsets at which the voices were compared
    parallel_fifths: int
    parallel_octaves: int  # octaves and unisons
    range_violations: int  # notes outside their voice's range
    crossings: int  # onsets x adjacent voices where the lower sounds above the upper
    key: str  # music21's key analysis (Aarden-Essen), e.g. "f# minor"
    key_agrees: bool | None  # with the requested key (same tonic and mode); None if none was requested

    @property
    def parallels(self) -> int:
        return self.parallel_fifths + self.parallel_octaves


def four_parts(score) -> list | None:
    """Soprano, alto, tenor and bass parts, by name; None if a score lacks one."""
    parts = list(getattr(score, "parts", []))
    named = []
    for voice in VOICES:
        match = [p for p in parts if (p.partName or "").strip().lower().startswith(voice.lower())]
        named.append(match[0] if match else None)
    if all(p is not None for p in named):
        return named
    if len(parts) == 4 and all(not p.partName for p in parts):
        return parts
    return None


def _line(part) -> tuple[list[float], list[float], list]:
    """Onsets, ends and pitches of a voice's notes, ties merged (a chord counts as its top note)."""
    starts, ends, pitches = [], [], []
    for n in part.stripTies().flatten().notes:
        ql = float(n.quarterLength)
        if ql <= 0:  # grace notes
            continue
        starts.append(float(n.offset))
        ends.append(float(n.offset) + ql)
        pitches.append(max(n.pitches, key=lambda p: p.ps) if n.isChord else n.pitch)
    return starts, ends, pitches


def verticalities(parts) -> list[list]:
    """The pitch each voice sounds (None: silent) at every onset of any voice, in time order."""
    lines = [_line(p) for p in parts]
    onsets = sorted({t for starts, _, _ in lines for t in starts})
    out = []
    for t in onsets:
        row = []
        for starts, ends, pitches in lines:
            i = bisect_right(starts, t) - 1
            row.append(pitches[i] if i >= 0 and ends[i] > t else None)
        out.append(row)
    return out


def check(score, key: str | Key | None = None) -> Report:
    """Counts of voice-leading faults in a four-part score, and whether music21's key analysis finds
    `key` (e.g. 'C', 'f#', 'Bb major'). Raises ValueError for a score without the four voices."""
    from music21 import stream, voiceLeading

    parts = four_parts(score)
    if parts is None:
        raise ValueError("a chorale needs parts named Soprano, Alto, Tenor and Bass")
    rows = verticalities(parts)
    fifths = octaves = crossings = 0
    for before, after in zip(rows, rows[1:]):
        for i, j in PAIRS:
            p1, p2, q1, q2 = before[i], after[i], before[j], after[j]
            if p1 is None or p2 is None or q1 is None or q2 is None:
                continue
            # Only both voices moving between two intervals that sound perfect can be parallel
            # fifths or octaves; this skips building a quartet for every other pair.
            if p1.ps == p2.ps or q1.ps == q2.ps:
                continue
            if (p1.ps - q1.ps) % 12 not in (0, 7) or (p2.ps - q2.ps) % 12 not in (0, 7):
                continue
            vlq = voiceLeading.VoiceLeadingQuartet(p1, p2, q1, q2)
            fifths += vlq.parallelFifth()
            octaves += vlq.parallelOctave() or vlq.parallelUnison()
    for row in rows:
        crossings += sum(1 for u in range(3) if row[u] is not None and row[u + 1] is not None
                         and row[u].ps < row[u + 1].ps)
    ranges = 0
    for voice, part in zip(VOICES, parts):
        lo, hi = CHECKED_RANGES[voice]
        ranges += sum(1 for p in _line(part)[2] if not lo <= p.midi <= hi)
    four = stream.Score()
    for p in parts:
        four.insert(0, p)
    found = four.analyze("key")
    agrees = None
    if key is not None:
        want = key if isinstance(key, Key) else parse_key(key)
        agrees = found.tonic.pitchClass == want.tonic and (found.mode == "minor") == want.minor
    return Report(len(rows), fifths, octaves, ranges, crossings, f"{found.tonic.name} {found.mode}", agrees)


def reference_key(score) -> str | None:
    """The key of a chorale from its notation, to score music21's analysis against: the key
    signature's major key if the bass ends on its tonic, its relative minor if on that one's, and
    None otherwise (modal endings, such as a Phrygian half cadence)."""
    from music21 import key

    parts = four_parts(score)
    if parts is None:
        return None
    sig = parts[0].recurse().getElementsByClass(key.KeySignature).first()
    last = parts[3].recurse().notes.last()
    if sig is None or last is None:
        return None
    bass = min(last.pitches, key=lambda p: p.ps).pitchClass
    for mode in ("major", "minor"):
        k = key.KeySignature(sig.sharps).asKey(mode)
        if k.tonic.pitchClass == bass:
            return f"{k.tonic.name} {mode}"
    return None
