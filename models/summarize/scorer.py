"""A supervised extractive summarizer: a sentence scorer trained on ACLSum's highlight labels.

Each sentence is read as its words (embeddings, mean-pooled and through a width-3 convolution,
max-pooled: cue phrases such as "we propose" or "results show"), its position in the document,
and a few document-level features (length, similarity to the rest of the document, share of
numbers). One logit per aspect: the probability that an annotator highlighted the sentence as
the paper's challenge, approach or outcome. Summaries are the top-scoring sentences.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genray.models.base import TrainableModel
from genray.models.catalog import register
from genray.models.errors import DataError, OptionError
from genray.models.summarize.text import ASPECTS, words

MAX_WORDS = 48  # words per sentence row; longer sentences are cut
LEAD = 16  # the first sentences each get a position of their own; the rest share 8 relative buckets
POSITIONS = LEAD + 8
FEATURES = 6


def encode_document(sentences: list[str], vocab: list[str] | dict[str, int]) -> dict[str, np.ndarray]:
    """A document's sentences -> {"tokens" (N, MAX_WORDS) int32 ids (0 pads, 1 unknown),
    "position" (N,) int64 buckets, "features" (N, FEATURES) float32}."""
    index = vocab if isinstance(vocab, dict) else {w: i for i, w in enumerate(vocab)}
    toks = [words(s) for s in sentences]
    n = len(toks)
    tokens = np.zeros((n, MAX_WORDS), dtype=np.int32)
    for i, t in enumerate(toks):
        ids = [index.get(w, 1) for w in t[:MAX_WORDS]]
        tokens[i, :len(ids)] = ids
    rel = np.arange(n) / max(n, 1)
    position = np.where(np.arange(n) < LEAD, np.arange(n), LEAD + np.minimum(7, (rel * 8).astype(int)))
    bags = [Counter(w for w in t if w[0].isalpha() and len(w) > 2) for t in toks]
    total = sum(bags, Counter())
    feats = np.zeros((n, FEATURES), dtype=np.float32)
    for i, (t, bag) in enumerate(zip(toks, bags)):
        rest = total - bag  # the document without this sentence
        dot = sum(c * rest[w] for w, c in bag.items())
        norm = np.sqrt(sum(c * c for c in bag.values()) * sum(c * c for c in rest.values()))
        feats[i] = (rel[i], 1.0 / (1 + i), np.log1p(len(t)) / 4, dot / norm if norm else 0.0,
                    sum(any(ch.isdigit() for ch in w) for w in t) / max(len(t), 1), np.log1p(n) / 5)
    return {"tokens": tokens, "position": position.astype(np.int64), "features": feats}


@register
class SentenceScorer(TrainableModel):
    """Trained like any model through the one Ray Train loop (kind "summarizer"); its NLL is the
    binary cross-entropy of the highlight labels."""
    family = "sentence-scorer"
    kind = "summarizer"
    modality = "document"
    abstractive = False
    nll_unit = "nats/label"

    def __init__(self, vocab: list[str], dim: int = 64, hidden: int = 96, dropout: float = 0.2,
                 aspects: tuple[str, ...] = ASPECTS):
        super().__init__()
        self.vocab, self.aspects = list(vocab), list(aspects)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.embed = nn.Embedding(len(vocab), dim, padding_idx=0)
        self.conv = nn.Conv1d(dim, hidden, 3, padding=1)
        self.position = nn.Embedding(POSITIONS, 16)
        self.head = nn.Sequential(nn.Linear(dim + hidden + 16 + FEATURES, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, len(aspects)))

    @classmethod
    def default_config(cls, meta: dict) -> dict:
        if meta.get("rows") != "sentences":
            raise DataError(f"a sentence scorer trains on sentence rows (data set 'aclsum'), not {meta.get('name')!r}")
        return {"family": cls.family, "vocab": meta["vocab"], "aspects": meta["aspects"]}

    @classmethod
    def search_space(cls, meta: dict) -> dict[str, tuple]:
        return {"lr": ("loguniform", 3e-4, 1e-2), "hidden": ("choice", [64, 96, 128]),
                "dropout": ("uniform", 0.0, 0.5)}

    def logits(self, tokens: torch.Tensor, position: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        mask = (tokens > 0).unsqueeze(-1).float()  # (B, L, 1)
        e = self.embed(tokens)  # (B, L, D)
        mean = (e * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, D)
        conv = F.relu(self.conv(e.transpose(1, 2))).transpose(1, 2)  # (B, L, H)
        peak = conv.masked_fill(mask == 0, 0.0).max(1).values  # (B, H)
        return self.head(torch.cat([mean, peak, self.position(position), features], dim=-1))  # (B, A)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = self.logits(batch["tokens"], batch["position"], batch["features"])
        return {"loss": F.binary_cross_entropy_with_logits(logits, batch["labels"])}

    @torch.no_grad()
    def eval_nll(self, batch: dict[str, torch.Tensor]) -> tuple[float, int]:
        logits = self.logits(batch["tokens"], batch["position"], batch["features"])
        return float(F.binary_cross_entropy_with_logits(logits, batch["labels"], reduction="sum")), logits.numel()

    @torch.no_grad()
    def score(self, sentences: list[str], aspect: str) -> np.ndarray:
        """Each sentence's probability of being highlighted for `aspect`."""
        if aspect not in self.aspects:
            raise OptionError(f"aspect must be one of {self.aspects}, got {aspect!r}", "aspect")
        enc = {k: torch.from_numpy(v) for k, v in encode_document(sentences, self.index).items()}
        self.eval()
        logits = self.logits(enc["tokens"].long(), enc["position"], enc["features"])
        return torch.sigmoid(logits[:, self.aspects.index(aspect)]).numpy()
