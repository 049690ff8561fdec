"""Recurrent (LSTM or GRU) language model over a symbol vocabulary. Its recurrent state is
the natural cache: sampling feeds one symbol per step and carries the state forward."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genray.models.base import SequenceModel
from genray.models.catalog import register
from genray.models.errors import ConfigError

CELLS = {"lstm": nn.LSTM, "gru": nn.GRU}


@register
class RecurrentLM(SequenceModel):
    family = "rnn"
    attacks = ("suffix",)
    explanations = ("attribution",)

    def __init__(self, vocab: str | list[str], cell: str = "lstm", n_embd: int = 64, hidden: int = 128,
                 n_layer: int = 2, dropout: float = 0.0):
        super().__init__()
        if cell not in CELLS:
            raise ConfigError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        self._set_vocab(vocab)
        V = len(self.vocab)
        self.embed = nn.Embedding(V, n_embd)
        self.rnn = CELLS[cell](n_embd, hidden, n_layer, batch_first=True, dropout=dropout if n_layer > 1 else 0.0)
        self.head = nn.Linear(hidden, V)

    @classmethod
    def default_config(cls, meta: dict) -> dict:
        # A few hundred melodies (in twelve keys) are memorised without strong dropout.
        extra = {"hidden": 256, "dropout": 0.4} if meta["modality"] == "music" else {}
        return {"family": cls.family, "vocab": meta["vocab"], **extra}

    @classmethod
    def search_space(cls, meta: dict) -> dict[str, tuple]:
        return {"lr": ("loguniform", 1e-3, 1e-2), "cell": ("choice", ["lstm", "gru"]),
                "hidden": ("choice", [64, 128, 256]), "n_layer": ("choice", [1, 2]),
                "dropout": ("uniform", 0.0, 0.4)}

    def logits(self, idx: torch.Tensor, state=None):
        """idx (B, T) -> logits (B, T, V) and the recurrent state after the last symbol."""
        out, state = self.rnn(self.embed(idx), state)  # (B, T, H)
        return self.head(out), state

    def token_embedding(self) -> nn.Embedding:
        return self.embed

    def logits_from_embeddings(self, emb: torch.Tensor) -> torch.Tensor:
        """emb (B, T, C) -> logits (B, T, V) from the initial state."""
        out, _ = self.rnn(emb)  # (B, T, H)
        return self.head(out)

    def forward(self, batch):
        tokens = batch["tokens"]  # (B, L): every row is one sequence, its first symbol has no target
        logits, _ = self.logits(tokens[:, :-1])
        return {"loss": F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))}

    @torch.no_grad()
    def eval_nll(self, batch) -> tuple[float, int]:
        tokens = batch["tokens"]
        logits, _ = self.logits(tokens[:, :-1])
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), reduction="sum")
        return float(nll), tokens[:, 1:].numel()

    def log_prob(self, x) -> torch.Tensor:
        """Log-probability of each row's symbols after its first (B,)."""
        tokens = self.tokens(x)
        logits, _ = self.logits(tokens[:, :-1])
        return torch.log_softmax(logits, -1).gather(2, tokens[:, 1:].unsqueeze(2)).squeeze(2).sum(1)

    # ---- generation (driven by models/sampling.py) ----------------------------------------
    def start(self, idx: torch.Tensor):
        logits, state = self.logits(idx)
        return logits[:, -1], state

    def advance(self, state, chosen: torch.Tensor):
        logits, state = self.logits(chosen.unsqueeze(1), state)
        return logits[:, -1], state
