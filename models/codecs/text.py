"""Character vocabulary: text <-> integer ids."""
from __future__ import annotations

from typing import Iterable

import numpy as np


class CharVocab:
    stop = None  # text runs on to the requested length

    def __init__(self, chars: str):
        if len(set(chars)) != len(chars):
            raise ValueError("vocabulary characters must be unique")
        self.chars = chars
        self._index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str | Iterable[str]) -> "CharVocab":
        if isinstance(text, str):
            return cls("".join(sorted(set(text))))
        seen: set[str] = set()
        for t in text:
            seen.update(t)
        return cls("".join(sorted(seen)))

    @property
    def symbols(self) -> str:
        return self.chars

    @property
    def start(self) -> str:
        """What an empty prompt stands for: a line break, as text in a corpus starts after one."""
        return "\n" if "\n" in self._index else self.chars[0]

    def __len__(self) -> int:
        return len(self.chars)

    def unknown(self, text: str) -> list[str]:
        """Characters of text the vocabulary cannot encode."""
        return sorted({c for c in text if c not in self._index})

    def encode(self, text: str) -> np.ndarray:
        bad = self.unknown(text)
        if bad:
            raise ValueError(f"characters not in the model's vocabulary: {''.join(bad)!r}")
        return np.fromiter((self._index[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)
