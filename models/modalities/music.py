"""Music: melodies as note events (`G4/1`, `R/0.5`, `|`). Samples are lists of events, returned
with a MIDI file (and a WAV rendering on request); data are streams of pieces split by tune."""
from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import torch

from genray.models.codecs import music
from genray.models.codecs.music import EventVocab
from genray.models.codecs.pianoroll import STEPS_PER_BAR, windows
from genray.models.errors import DataError, InputError
from genray.models.modalities.base import b64, dense, fixed_list, register
from genray.models.modalities.symbols import SymbolModality
from genray.models.splits import SPLITS, assign

SEQ_LEN = 128  # events per row (+1): a chorale melody is ~50
TRANSPOSITIONS = range(-5, 7)
TUNE_INTERVALS = 8
# Piano-roll rows ("bars"): four bars of sixteenths over 31 semitones from A-flat 3, which hold
# the chorale sopranos (C4 to A5) in their own keys (pitches outside fold in by octaves), and a rest.
ROLL_BARS, ROLL_LOWEST, ROLL_ROWS = 4, 56, 32


def _tune(piece: list[str]) -> tuple:
    """The opening intervals of a melody: the same in any key, and across rhythmic variants."""
    pitches = [e[0] for e in map(music.parse_event, piece) if e and e[0] is not None]
    return tuple(b - a for a, b in zip(pitches, pitches[1:]))[:TUNE_INTERVALS]


@register
class Music(SymbolModality):
    name = "music"
    nll_unit = "nats/note"
    what = "events"
    request_fields = frozenset({"wav"})
    file_hint = "FILE.mid or FILE.wav"

    # A WAV is about 350 kB a minute: a response carries at most this many.
    max_wav_samples = 4

    def show(self, symbols: list[str]) -> str:
        return " ".join(symbols[:10])

    def check(self, fields: dict[str, Any], config: dict) -> list[tuple[str, str]]:
        errors = super().check(fields, config)
        if fields.get("stop"):
            errors.append(("stop", "stop sequences apply to text models; a piece of music ends by itself"))
        if fields.get("wav") and fields.get("n", 1) > self.max_wav_samples:
            errors.append(("wav", f"WAV audio is returned for at most {self.max_wav_samples} samples a request; "
                                  "ask for fewer, or for MIDI alone"))
        if fields.get("wav") and fields.get("stream"):
            errors.append(("wav", "a streamed piece has no WAV: render the MIDI of the finished piece"))
        return errors

    def to_json(self, sample: list[str], options: dict[str, Any]) -> dict:
        out = {"events": " ".join(sample), "midi": b64(music.to_midi(sample))}
        if options.get("wav"):
            out["wav"] = b64(music.to_wav(sample))
        return out

    def to_text(self, sample: list[str]) -> str:
        return " ".join(sample)

    def write(self, samples: list, output: str) -> list[str]:
        """Each sample as OUTPUT.mid (OUTPUT-K.mid for several); a .wav output renders audio."""
        stem, dot, ext = output.rpartition(".")
        if not dot or ext.lower() not in ("mid", "midi", "wav"):
            raise InputError("music samples are written to FILE.mid or FILE.wav")
        encode = music.to_wav if ext.lower() == "wav" else music.to_midi
        paths = [output if len(samples) == 1 else f"{stem}-{i}.{ext}" for i in range(len(samples))]
        for path, s in zip(paths, samples):
            with open(path, "wb") as f:
                f.write(encode(s))
        return paths

    def to_tensors(self, meta: dict, batch: dict[str, np.ndarray]) -> dict:
        if meta.get("rows") == "bars":  # piano rolls, which the GAN reads as 8-bit images
            return {"image": torch.from_numpy(np.array(dense(batch["roll"])).reshape(-1, *meta["shape"]))}
        return super().to_tensors(meta, batch)

    def tables(self, pieces: list[list[str]], rows: str = "events") -> tuple[dict[str, pa.Table], dict]:
        """Pieces are split whole, by tune, into train / val / test (a seeded tenth of the tunes
        each to val and test). As "events", training pieces are also transposed into all twelve
        keys (held-out ones keep their original keys), and each split is one stream of pieces,
        each ended by '|'. As "bars", each row is a piano roll of ROLL_BARS bars starting at a bar
        of a piece, every piece in its own key."""
        if len(pieces) < 3:
            raise DataError(f"need at least 3 pieces of music (train, val and test), got {len(pieces)}")
        # Many chorales harmonise the same hymn tune with small changes: pieces whose melodies
        # open with the same intervals are one tune and go to the same split, so that held-out
        # splits hold tunes never heard in training.
        keys = [_tune(p) for p in pieces]
        tunes = sorted(set(keys))
        if len(tunes) >= 3:
            of_tune = dict(zip(tunes, assign(len(tunes))))
            split = np.array([of_tune[k] for k in keys])
        else:  # fewer than three tunes: split the pieces themselves
            split = assign(len(pieces))
        # Training pieces are stored tune by tune, so that any contiguous run of rows holds whole tunes.
        by_tune = sorted((k, i) for i, k in enumerate(keys) if split[i] == 0)
        held = {name: [p for p, s in zip(pieces, split) if s == i] for i, name in enumerate(SPLITS) if i}
        meta = {"modality": self.name, "pieces": len(pieces), "tunes": len(tunes),
                "val_pieces": len(held["val"]), "test_pieces": len(held["test"])}
        if rows == "bars":
            return self._rolls([pieces[i] for _, i in by_tune], held, meta)
        train = [music.transpose(pieces[i], t) for _, i in by_tune for t in TRANSPOSITIONS]
        vocab = EventVocab.from_pieces(train + held["val"] + held["test"])

        def table(split):
            ids = vocab.encode([vocab.stop] + [t for p in split for t in [*p, vocab.stop]]).astype(np.int32)
            seq = min(SEQ_LEN, len(ids) - 1)
            return pa.table({"tokens": fixed_list(self.token_rows(ids, seq))}), seq

        (train_t, train_seq), (val_t, _), (test_t, _) = table(train), table(held["val"]), table(held["test"])
        meta.update(vocab=vocab.symbols, seq_len=train_seq + 1)
        return {"train": train_t, "val": val_t, "test": test_t}, meta

    def _rolls(self, train: list[list[str]], held: dict[str, list], meta: dict) -> tuple[dict[str, pa.Table], dict]:
        def table(split):
            rolls = np.stack([w for p in split for w in windows(p, ROLL_LOWEST, ROLL_ROWS, ROLL_BARS)])
            return pa.table({"roll": fixed_list(rolls * np.uint8(255))})

        meta.update(rows="bars", shape=[2, ROLL_ROWS, ROLL_BARS * STEPS_PER_BAR], lowest=ROLL_LOWEST, bars=ROLL_BARS)
        return {"train": table(train), **{name: table(pieces) for name, pieces in held.items()}}, meta
