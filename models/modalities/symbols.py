"""What text and music share: samples are sequences over a saved vocabulary, rows of symbol ids
are the training data, and a prompt is checked against the vocabulary."""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from genray.models.codecs import make_vocab
from genray.models.modalities.base import Modality, dense


class SymbolModality(Modality):
    what: ClassVar[str]  # what the vocabulary holds: "characters", "events"

    def check(self, fields: dict[str, Any], config: dict) -> list[tuple[str, str]]:
        prompt = fields.get("prompt")
        if prompt is None:
            return []
        if not isinstance(prompt, str):
            return [("prompt", f"prompt for a {self.name} model must be a string")]
        bad = make_vocab(config["vocab"]).unknown(prompt)
        if bad:
            return [("prompt", f"{self.what} not in the model's vocabulary: {self.show(bad)!r}")]
        return []

    def show(self, symbols: list[str]) -> str:
        return "".join(symbols)

    def to_tensors(self, meta: dict, batch: dict[str, np.ndarray]) -> dict:
        return {"tokens": torch.as_tensor(dense(batch["tokens"]).astype(np.int64))}

    @staticmethod
    def token_rows(ids: np.ndarray, seq_len: int) -> np.ndarray | None:
        """Rows of seq_len + 1 ids overlapping by one, so that every transition is a target once."""
        n = (len(ids) - 1) // seq_len
        return np.lib.stride_tricks.sliding_window_view(ids, seq_len + 1)[::seq_len][:n] if n else None
