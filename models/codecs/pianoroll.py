"""Melodies <-> piano rolls: a (2, rows, steps) grid at sixteenth-note steps, the layout the image
GAN's convolutions take. Channel 0 is one-hot in every step: the sounding pitch (rows - 1 of
them, from `lowest` up) or, in the last row, a rest; channel 1 is on where a note starts, so that
repeated notes stay apart. A melody is monophonic, so every step is one choice among the rows."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from genray.models.codecs.music import event, parse_event

STEPS_PER_QUARTER = 4
STEPS_PER_BAR = 4 * STEPS_PER_QUARTER  # four quarter notes


def _fold(midi: int, lowest: int, pitches: int) -> int:
    """A pitch moved by octaves into [lowest, lowest + pitches) (pitches >= 12)."""
    while midi < lowest:
        midi += 12
    while midi >= lowest + pitches:
        midi -= 12
    return midi


def to_roll(events: Sequence[str], lowest: int, rows: int, steps: int | None = None) -> np.ndarray:
    """(2, rows, steps) uint8 in {0, 1} of a melody from its start (rests after its end); steps
    defaults to its length."""
    notes = [e for e in map(parse_event, events) if e is not None]
    total = sum(round(ql * STEPS_PER_QUARTER) for _, ql in notes)
    roll = np.zeros((2, rows, steps if steps is not None else total), dtype=np.uint8)
    roll[0, rows - 1] = 1  # rest, until a note says otherwise
    t = 0
    for midi, ql in notes:
        n = round(ql * STEPS_PER_QUARTER)
        if midi is not None and t < roll.shape[2]:
            p = _fold(midi, lowest, rows - 1) - lowest
            roll[0, :, t:t + n] = 0
            roll[0, p, t:t + n] = 1
            roll[1, p, t] = 1
        t += n
    return roll


def from_roll(roll: np.ndarray, lowest: int, threshold: float = 0.5) -> list[str]:
    """Events of a (2, rows, steps) roll with values in [0, 1]: at each step the most likely row
    (the last one a rest); a note ends where the pitch changes or an onset is on (a melody has one
    voice: an onset at any pitch starts the step's note)."""
    rest = roll.shape[1] - 1
    runs: list[list] = []  # [midi or None, steps]
    for t in range(roll.shape[2]):
        p = int(roll[0, :, t].argmax())
        midi = None if p == rest else lowest + p
        if runs and runs[-1][0] == midi and (midi is None or roll[1, :, t].max() <= threshold):
            runs[-1][1] += 1
        else:
            runs.append([midi, 1])
    return [event(midi, n / STEPS_PER_QUARTER) for midi, n in runs]


def windows(events: Sequence[str], lowest: int, rows: int, bars: int, stride_bars: int = 1) -> list[np.ndarray]:
    """Rolls of `bars` bars from every stride_bars-th bar of a melody (the last ones may end in rest)."""
    total = sum(round(e[1] * STEPS_PER_QUARTER) for e in map(parse_event, events) if e is not None)
    width = bars * STEPS_PER_BAR
    roll = to_roll(events, lowest, rows, max(total, width) + width)  # rests past the end
    return [roll[:, :, start:start + width].copy()
            for start in range(0, max(total - width // 2, 1), stride_bars * STEPS_PER_BAR)]
