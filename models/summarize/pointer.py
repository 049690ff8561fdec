"""An abstractive summarizer: an LSTM encoder-decoder with attention and a copy mechanism
(pointer-generator, See et al., 2017).

The source is an aspect token followed by the words of a few selected sentences (extract, then
abstract, as in Chen & Bansal, 2018): in training, the sentences annotators highlighted for that
aspect; in use, those an extractor picks (`extractor`: a method of models/summarize/extractive.py
or a sentence scorer's registry name). At each step the decoder mixes generating a vocabulary
word with copying a source word, through attention; source words outside the vocabulary get ids
of their own past it, so they can still be copied.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genray.models.base import TrainableModel
from genray.models.catalog import register
from genray.models.errors import DataError
from genray.models.summarize.text import ASPECTS, BOS, EOS, UNK, detokenize, words

BOS_ID, EOS_ID, UNK_ID = 2, 3, 1  # positions of BOS, EOS and UNK in text.SPECIALS


def source_words(aspect: str, sentences: list[str], max_source: int) -> list[str]:
    return [f"<{aspect}>", *[w for s in sentences for w in words(s)]][:max_source]


def encode_pair(source: list[str], target: list[str] | None, index: dict[str, int], max_source: int,
                max_target: int, max_oov: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """Ids of a (source, target) pair: "source" (vocabulary ids, unknown words as UNK),
    "source_ext" (unknown source words numbered past the vocabulary, up to max_oov of them),
    "target_in" (BOS + target, vocabulary ids) and "target_out" (target + EOS, copyable unknown
    words by their extended ids); 0 pads. Returns the arrays and the unknown source words."""
    V = len(index)
    oov: list[str] = []
    src = np.zeros(max_source, dtype=np.int32)
    ext = np.zeros(max_source, dtype=np.int32)
    for i, w in enumerate(source[:max_source]):
        src[i] = index.get(w, UNK_ID)
        if w in index:
            ext[i] = index[w]
        else:
            if w not in oov and len(oov) < max_oov:
                oov.append(w)
            ext[i] = V + oov.index(w) if w in oov else UNK_ID
    out = {"source": src, "source_ext": ext}
    if target is not None:
        tgt = target[:max_target - 1]
        t_in = np.zeros(max_target, dtype=np.int32)
        t_out = np.zeros(max_target, dtype=np.int32)
        t_in[0] = BOS_ID
        for i, w in enumerate(tgt):
            t_in[i + 1] = index.get(w, UNK_ID)
            t_out[i] = index[w] if w in index else (V + oov.index(w) if w in oov else UNK_ID)
        t_out[len(tgt)] = EOS_ID
        out.update(target_in=t_in, target_out=t_out)
    return out, oov


@register
class PointerGenerator(TrainableModel):
    family = "pointer-generator"
    kind = "summarizer"
    modality = "document"
    abstractive = True  # writes words: its length is max_tokens, never max_sentences
    nll_unit = "nats/word"

    def __init__(self, vocab: list[str], dim: int = 128, hidden: int = 192, max_source: int = 200,
                 max_target: int = 48, max_oov: int = 64, dropout: float = 0.3, extractor: str = "lexrank",
                 source_sentences: int = 5):
        super().__init__()
        self.vocab, self.index = list(vocab), {w: i for i, w in enumerate(vocab)}
        if self.vocab[BOS_ID] != BOS or self.vocab[EOS_ID] != EOS or self.vocab[UNK_ID] != UNK:
            raise DataError("the vocabulary must start with text.SPECIALS")
        self.max_source, self.max_target, self.max_oov = max_source, max_target, max_oov
        self.extractor, self.source_sentences = extractor, source_sentences
        V = len(vocab)
        self.embed = nn.Embedding(V, dim, padding_idx=0)
        self.drop = nn.Dropout(dropout)  # 300 training pairs: without it the model memorises them in a few epochs
        self.encoder = nn.LSTM(dim, hidden, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(2 * hidden, 2 * hidden)  # the encoder's final states -> the decoder's (h, c)
        self.decoder = nn.LSTMCell(dim + 2 * hidden, hidden)  # input: the word and the last context
        self.attn_enc = nn.Linear(2 * hidden, hidden, bias=False)
        self.attn_dec = nn.Linear(hidden, hidden)
        self.attn_v = nn.Linear(hidden, 1, bias=False)
        self.out = nn.Sequential(nn.Linear(3 * hidden, dim), nn.Tanh())
        self.generate = nn.Linear(dim, V)
        self.p_gen = nn.Linear(3 * hidden + dim, 1)

    @classmethod
    def default_config(cls, meta: dict) -> dict:
        if meta.get("rows") != "pairs":
            raise DataError(f"a pointer-generator trains on (source, summary) pairs (data set 'aclsum-pairs'), "
                            f"not {meta.get('name')!r}")
        return {"family": cls.family, "vocab": meta["vocab"], "max_source": meta["max_source"],
                "max_target": meta["max_target"], "max_oov": meta["max_oov"]}

    @classmethod
    def search_space(cls, meta: dict) -> dict[str, tuple]:
        return {"lr": ("loguniform", 3e-4, 1e-2), "hidden": ("choice", [128, 192, 256])}

    # ---- the network ------------------------------------------------------------------
    def encode(self, source: torch.Tensor):
        mask = source > 0  # (B, S)
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(self.drop(self.embed(source)), lengths, batch_first=True,
                                                   enforce_sorted=False)
        enc, (h, _) = self.encoder(packed)
        enc, _ = nn.utils.rnn.pad_packed_sequence(enc, batch_first=True, total_length=source.shape[1])  # (B, S, 2H)
        state = torch.tanh(self.bridge(torch.cat([h[0], h[1]], -1))).chunk(2, -1)  # decoder (h, c), (B, H) each
        return enc, self.attn_enc(enc), mask, state

    def step(self, word: torch.Tensor, state, context: torch.Tensor, enc, keys, mask, source_ext, n_ext: int):
        """One decoder step -> (probabilities over vocabulary + extended ids (B, V + n_ext), state, context)."""
        emb = self.drop(self.embed(word))  # (B, D)
        h, c = self.decoder(torch.cat([emb, context], -1), state)
        scores = self.attn_v(torch.tanh(keys + self.attn_dec(h).unsqueeze(1))).squeeze(-1)  # (B, S)
        attn = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        context = torch.bmm(attn.unsqueeze(1), enc).squeeze(1)  # (B, 2H)
        gen = torch.sigmoid(self.p_gen(torch.cat([h, context, emb], -1)))  # (B, 1)
        vocab = self.generate(self.drop(self.out(torch.cat([h, context], -1)))).softmax(-1)  # (B, V)
        probs = F.pad(gen * vocab, (0, n_ext))
        probs = probs.scatter_add(1, source_ext.long(), (1 - gen) * attn)
        return probs, (h, c), context

    def _nll(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        source, target_in, target_out = batch["source"].long(), batch["target_in"].long(), batch["target_out"].long()
        enc, keys, mask, state = self.encode(source)
        context = enc.new_zeros(len(source), enc.shape[-1])
        total, count = enc.new_zeros(()), (target_out > 0).sum()
        for t in range(int((target_out > 0).sum(1).max())):
            probs, state, context = self.step(target_in[:, t], state, context, enc, keys, mask,
                                              batch["source_ext"], self.max_oov)
            p = probs.gather(1, target_out[:, t:t + 1]).squeeze(1)
            total = total - (torch.log(p + 1e-9) * (target_out[:, t] > 0)).sum()
        return total, count

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        total, count = self._nll(batch)
        return {"loss": total / count.clamp(min=1)}

    @torch.no_grad()
    def eval_nll(self, batch: dict[str, torch.Tensor]) -> tuple[float, int]:
        total, count = self._nll(batch)
        return float(total), int(count)

    # ---- summarizing ------------------------------------------------------------------
    @torch.no_grad()
    def summarize(self, aspect: str, sentences: list[str], max_tokens: int | None = None) -> str:
        """Greedy decoding of a summary of `sentences` (already selected) for `aspect`, at most
        max_tokens words; a word that would repeat a trigram already written is never chosen."""
        if aspect not in ASPECTS:
            raise DataError(f"aspect must be one of {list(ASPECTS)}, got {aspect!r}")
        self.eval()
        src, oov = encode_pair(source_words(aspect, sentences, self.max_source), None, self.index,
                               self.max_source, self.max_target, self.max_oov)
        source = torch.from_numpy(src["source"]).long()[None]
        source_ext = torch.from_numpy(src["source_ext"]).long()[None]
        enc, keys, mask, state = self.encode(source)
        context = enc.new_zeros(1, enc.shape[-1])
        word, out = torch.tensor([BOS_ID]), []
        V = len(self.vocab)
        for _ in range(min(max_tokens or self.max_target, self.max_target)):
            probs, state, context = self.step(word, state, context, enc, keys, mask, source_ext, self.max_oov)
            probs = probs[0]
            probs[[0, BOS_ID, UNK_ID]] = 0
            if len(out) < 4:
                probs[EOS_ID] = 0
            for i in range(len(out) - 2):
                if out[i:i + 2] == out[-2:]:  # the trigram (out[-2], out[-1], out[i + 2]) is written
                    probs[out[i + 2]] = 0
            nxt = int(probs.argmax())
            if nxt == EOS_ID:
                break
            out.append(nxt)
            word = torch.tensor([nxt if nxt < V else UNK_ID])
        return detokenize(self.vocab[i] if i < V else oov[i - V] for i in out)
