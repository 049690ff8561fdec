"""Sampling of the symbol families (Markov chain, RNN, transformer): one decoding loop over a
family's two-call decoder,

    start(idx (B, T)) -> (logits (B, V) of the next symbol, state)
    advance(state, chosen (B,)) -> (logits (B, V), state)

with temperature, top-k and top-p (nucleus) filtering, stop sequences, and a streaming form that
yields each row's new text as it is decided. Each row draws from its own generator, so its
sample never depends on the rows batched with it."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch

from genray.models.base import draw_categorical, per_row
from genray.models.errors import Cancelled


def filter_logits(logits: torch.Tensor, top_k: Sequence[int | None], top_p: Sequence[float | None]) -> torch.Tensor:
    """Keep each row's k largest logits (B, V), then the smallest set of the most likely whose
    probability reaches p; a None k or p keeps them all. The most likely symbol always stays."""
    V = logits.shape[-1]
    ks = torch.tensor([V if not k else min(int(k), V) for k in top_k], device=logits.device)
    ps = torch.tensor([1.0 if p is None else float(p) for p in top_p], dtype=logits.dtype, device=logits.device)
    if bool((ks == V).all()) and bool((ps >= 1.0).all()):
        return logits
    ordered, order = logits.sort(dim=-1, descending=True)  # (B, V)
    probs = torch.softmax(ordered, -1)
    before = probs.cumsum(-1) - probs  # mass of the more likely symbols
    rank = torch.arange(V, device=logits.device)
    drop = (rank >= ks.unsqueeze(1)) | ((before >= ps.unsqueeze(1)) & (rank > 0))
    return logits.scatter(1, order, ordered.masked_fill(drop, -math.inf))


@dataclass
class _Row:
    steps: int
    stops: tuple[str, ...]
    prompt: Any  # the decoded prompt that starts the sample ("" or [] for none)
    out: Any  # the decoded continuation so far: text, or a list of events
    done: bool = False
    sent: int = 0  # how much of `out` a stream has emitted

    @property
    def hold(self) -> int:
        """Characters a stream keeps back while they may begin a stop sequence."""
        return 0 if self.done else max((len(s) for s in self.stops), default=1) - 1


def _stops(stop: Any, n: int) -> list:
    """Per-row stop sequences from one string, one list of strings for every row, or a list per row."""
    if isinstance(stop, str):
        return [(stop,)] * n
    if isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop):
        return [tuple(stop)] * n
    return per_row(stop, n)


def _rows(model, n: int, options: dict) -> tuple[list[_Row], list[list[int]]]:
    vocab = model.vocab
    prompts = per_row(options.get("prompt"), n)
    steps, stops = per_row(options.get("max_tokens", 256), n), _stops(options.get("stop"), n)
    ids = [list(vocab.encode(p if p else vocab.start)) for p in prompts]
    empty = vocab.decode([])
    rows = [_Row(int(steps[i]), tuple(stops[i] or ()), vocab.decode(ids[i]) if prompts[i] else empty, empty)
            for i in range(n)]
    return rows, ids


def _decode(model, gens: list[torch.Generator], options: dict, rows: list[_Row],
            ids: list[list[int]]) -> Iterator[list[int]]:
    """Run the rows in groups of equal prompt length, updating them; after each step, yield the
    indices of the group's rows. options["cancel"]() true stops it with Cancelled."""
    n, vocab, cancel = len(gens), model.vocab, options.get("cancel")
    temps, ks, ps = (per_row(options.get(k, d), n) for k, d in (("temperature", 1.0), ("top_k", None),
                                                                  ("top_p", None)))
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(ids):
        groups.setdefault(len(t), []).append(i)
    for group in groups.values():
        idx = torch.stack([torch.as_tensor(ids[i]) for i in group]).to(model.device)  # (b, T)
        temp = torch.tensor([float(temps[i]) for i in group], dtype=torch.float64, device=idx.device)
        logits, state = model.start(idx)
        for step in range(max(rows[i].steps for i in group)):
            if cancel is not None and cancel():
                raise Cancelled("every caller of this batch went away")
            filtered = filter_logits(logits.double() / temp.unsqueeze(1), [ks[i] for i in group],
                                     [ps[i] for i in group])
            chosen = draw_categorical(torch.softmax(filtered, -1), [gens[i] for i in group])  # (b,)
            for j, sym in zip(group, chosen.tolist()):
                _append(rows[j], vocab, sym, step)
            yield group
            if all(rows[i].done for i in group):
                break
            logits, state = model.advance(state, chosen)


def _append(row: _Row, vocab, sym: int, step: int) -> None:
    if row.done:
        return
    piece = vocab.decode([sym])
    if vocab.stop is not None and vocab.stop in piece:  # the end of a piece (music)
        row.done = True
        return
    row.out = row.out + piece
    for s in row.stops:
        if row.out.endswith(s):  # first seen as it ends at the symbol just added
            row.out, row.done = row.out[: -len(s)], True
            return
    row.done = step + 1 >= row.steps


def sample_sequences(model, gens: list[torch.Generator], **options: Any) -> list:
    """Each row's sample: its prompt and its continuation (text, or a list of events)."""
    rows, ids = _rows(model, len(gens), options)
    for _ in _decode(model, gens, options, rows, ids):
        pass
    return [r.prompt + r.out for r in rows]


def stream_sequences(model, gens: list[torch.Generator], **options: Any) -> Iterator[list[tuple[int, Any]]]:
    """Per decoding step, the (row, new text or events) pairs decided in it; a row's pieces joined
    are its continuation (without the prompt), with any stop sequence withheld."""
    rows, ids = _rows(model, len(gens), options)
    for group in _decode(model, gens, options, rows, ids):
        pieces = []
        for i in group:
            r = rows[i]
            end = len(r.out) - r.hold
            if end > r.sent:
                pieces.append((i, r.out[r.sent: end]))
                r.sent = end
        if pieces:
            yield pieces
