"""Keys: their names, signatures, tonics and the spelling of pitches in them (a pitch's letter
follows its scale degree, so that music21's interval analysis reads a fifth as a fifth)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from genray.models.errors import InputError

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


