"""A composed chorale: four voices of note events and the chord under each, exported as events,
MIDI numbers, a music21 score or a MIDI file."""
from __future__ import annotations

from dataclasses import dataclass

from genray.models.codecs.music import parse_event
from genray.models.composition.keys import Key
from genray.models.composition.voicing import VOICES


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
