"""Music as a sequence of note events, and events <-> MIDI / WAV.

An event is one token: `PITCH/DURATION` for a note (`G4/1`, `F#5/0.5`; durations in quarter
notes), `R/DURATION` for a rest, and `|` for the end of a piece. A melody is a list of events;
its text form is the events separated by spaces, which is also how a prompt is written.
"""
from __future__ import annotations

import io
import math
import wave
from typing import Iterable, Sequence

import numpy as np

END = "|"
REST = "R"
# Durations on the grid, in quarter notes; other lengths snap to the nearest (in log time).
DURATIONS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def pitch_name(midi: int) -> str:
    return f"{_NAMES[midi % 12]}{midi // 12 - 1}"


def pitch_midi(name: str) -> int:
    """'F#4' -> 66. Sharps only, as pitch_name writes them."""
    i = 2 if len(name) > 1 and name[1] == "#" else 1
    if name[:i] not in _NAMES:
        raise ValueError(f"bad pitch name {name!r}")
    midi = _NAMES.index(name[:i]) + 12 * (int(name[i:]) + 1)
    if not 0 <= midi <= 127:
        raise ValueError(f"pitch {name!r} is outside MIDI's range")
    return midi


def snap_duration(ql: float) -> float:
    return min(DURATIONS, key=lambda d: abs(math.log(d) - math.log(ql)))


def event(midi: int | None, ql: float) -> str:
    """A note (or, with midi None, a rest) of ql quarter notes, snapped to the grid."""
    return f"{REST if midi is None else pitch_name(midi)}/{snap_duration(ql):g}"


def parse_event(tok: str) -> tuple[int | None, float] | None:
    """'G4/1' -> (67, 1.0); 'R/2' -> (None, 2.0); '|' -> None."""
    if tok == END:
        return None
    p, sep, d = tok.partition("/")
    if not sep:
        raise ValueError(f"bad event {tok!r}: expected PITCH/DURATION, R/DURATION or '|'")
    ql = float(d)
    if not ql > 0:
        raise ValueError(f"bad duration in {tok!r}")
    return (None if p == REST else pitch_midi(p)), ql


def transpose(events: Sequence[str], semitones: int) -> list[str]:
    out = []
    for tok in events:
        e = parse_event(tok)
        if e is None or e[0] is None:
            out.append(tok)
        else:
            out.append(f"{pitch_name(e[0] + semitones)}/{tok.partition('/')[2]}")
    return out


class EventVocab:
    """Event tokens <-> integer ids; the same interface as CharVocab for the sequence families."""

    start = END  # a piece begins after the end of the previous one
    stop = END

    def __init__(self, symbols: Sequence[str]):
        self.symbols = list(symbols)
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("vocabulary events must be unique")
        self._index = {s: i for i, s in enumerate(self.symbols)}

    @classmethod
    def from_pieces(cls, pieces: Iterable[Sequence[str]]) -> "EventVocab":
        seen = {END}
        for p in pieces:
            seen.update(p)
        return cls(sorted(seen))

    def __len__(self) -> int:
        return len(self.symbols)

    @staticmethod
    def split(text: str | Sequence[str]) -> list[str]:
        return text.split() if isinstance(text, str) else list(text)

    def unknown(self, text: str | Sequence[str]) -> list[str]:
        return sorted({t for t in self.split(text) if t not in self._index})

    def encode(self, text: str | Sequence[str]) -> np.ndarray:
        toks = self.split(text)
        bad = self.unknown(toks)
        if bad:
            raise ValueError(f"events not in the model's vocabulary: {' '.join(bad[:10])}")
        return np.fromiter((self._index[t] for t in toks), dtype=np.int64, count=len(toks))

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.symbols[int(i)] for i in ids]


# ---- MIDI and audio -------------------------------------------------------------------------

def to_stream(events: Sequence[str], bpm: float = 90.0):
    """Events -> a music21 stream (a piece ends at the first '|')."""
    from music21 import note, stream, tempo

    s = stream.Stream()
    s.append(tempo.MetronomeMark(number=bpm))
    for tok in events:
        e = parse_event(tok)
        if e is None:
            break
        midi, ql = e
        s.append(note.Rest(quarterLength=ql) if midi is None else note.Note(midi, quarterLength=ql))
    return s


def to_midi(events: Sequence[str], bpm: float = 90.0) -> bytes:
    """A standard MIDI file of the melody, playable in any player."""
    from music21 import midi

    mf = midi.translate.streamToMidiFile(to_stream(events, bpm))
    return mf.writestr()


def from_stream(part) -> list[str]:
    """The events of a monophonic music21 part or stream (ties merged; chords keep their top note)."""
    notes: list[list] = []  # [midi or None, quarter length]
    for x in part.stripTies().flatten().notesAndRests:
        ql = float(x.quarterLength)
        if ql <= 0:  # grace notes
            continue
        midi = None if x.isRest else max(p.midi for p in x.pitches) if x.isChord else x.pitch.midi
        if midi is None and notes and notes[-1][0] is None:
            notes[-1][1] += ql  # a rest split at a barline is one rest
        else:
            notes.append([midi, ql])
    return [event(midi, ql) for midi, ql in notes]


def from_midi(data: bytes) -> list[str]:
    """Events of the top voice of a MIDI file."""
    from music21 import converter

    score = converter.parseData(data, format="midi")
    parts = getattr(score, "parts", None)
    return trim(from_stream(parts[0] if parts else score))


def trim(events: Sequence[str]) -> list[str]:
    """Without trailing rests: silence after the last note is not in a MIDI file (and music21
    pads a bar with rests on reading one)."""
    events = list(events)
    while events and events[-1].startswith(REST + "/"):
        events.pop()
    return events


def _pcm(events: Sequence[str], bpm: float, rate: int, max_seconds: float) -> np.ndarray:
    """The melody played by a soft additive synth (three harmonics, with an attack-decay envelope
    so that repeated notes are heard apart), cut at max_seconds."""
    chunks, total = [], 0
    for tok in events:
        if total >= max_seconds * rate:
            break
        e = parse_event(tok)
        if e is None:
            break
        midi, ql = e
        n = int(rate * ql * 60.0 / bpm)
        total += n
        if midi is None:
            chunks.append(np.zeros(n))
            continue
        t = np.arange(n) / rate
        f = 440.0 * 2 ** ((midi - 69) / 12)
        tone = sum(a * np.sin(2 * np.pi * f * h * t) for h, a in ((1, 1.0), (2, 0.4), (3, 0.15)))
        env = np.minimum(1.0, t / 0.01) * np.exp(-3.0 * t) * np.minimum(1.0, (n - np.arange(n)) / (0.02 * rate))
        chunks.append(tone * env)
    return np.concatenate(chunks) if chunks else np.zeros(1)


def to_wav(events: Sequence[str], bpm: float = 90.0, rate: int = 22050, max_seconds: float = 120.0) -> bytes:
    """16-bit mono WAV of the melody (cut at max_seconds, so that a long sample's audio stays a few MB)."""
    return mix_wav([events], bpm, rate, max_seconds)


def mix_wav(voices: Sequence[Sequence[str]], bpm: float = 90.0, rate: int = 22050,
            max_seconds: float = 120.0) -> bytes:
    """16-bit mono WAV of several voices sounding together (a chorale's four parts)."""
    parts = [_pcm(v, bpm, rate, max_seconds) for v in voices]
    pcm = np.zeros(max(len(p) for p in parts))
    for p in parts:
        pcm[:len(p)] += p
    pcm = (0.3 * 32767 * pcm / max(1.0, np.abs(pcm).max() / 1.5)).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()
