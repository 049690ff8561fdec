"""Character-level GPT (decoder-only transformer), after nanoGPT, with rotary positions (RoFormer)
and a rolling KV cache.

Attention is causal within a window of block_size symbols: training never sees more, and rotary
positions make attention depend on distance alone, so sampling past the block slides the window
along, and a cache of each layer's last block_size - 1 keys and values serves every step
(sliding-window attention, as in Longformer and Mistral). Models saved with learned absolute
positions ("positions": "learned") still load, and recompute their last block past it."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genray.models.base import STRATEGIES, ParallelPlan, SequenceModel
from genray.models.catalog import register
from genray.models.errors import ConfigError
from genray.models.optim import OptimizerSettings

KVCache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (k, v), each (B, nh, T, hs)
Rotary = torch.Tensor  # complex rotations (T, hs / 2)
POSITIONS = ("rope", "learned")
IGNORE = -100  # a target position that is not scored (cross_entropy's ignore_index)


class CausalSelfAttention(nn.Module):
    # Separate query, key and value projections, so that tensor parallelism can give each worker
    # whole heads (a column split of one fused projection would cut across q, k and v).
    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        self.head_size = n_embd // n_head
        self.q, self.k, self.v = (nn.Linear(n_embd, n_embd) for _ in range(3))
        self.c_proj = nn.Linear(n_embd, n_embd)
        self.dropout = dropout
        self._register_load_state_dict_pre_hook(_split_fused_qkv)

    def forward(self, x, past: tuple[torch.Tensor, torch.Tensor] | None = None, rotary: Rotary | None = None,
                window: int | None = None):
        """x (B, T, C) -> (B, T, C) and this layer's keys and values. With `window`, each position
        attends to at most that many (itself included), and the cache keeps window - 1."""
        B, T, _ = x.shape
        # -1 heads: under tensor parallelism a worker holds n_head / workers of them.
        q, k, v = (p(x).view(B, T, -1, self.head_size).transpose(1, 2)  # (B, nh, T, hs)
                   for p in (self.q, self.k, self.v))
        if rotary is not None:
            q, k = rotate(q, rotary), rotate(k, rotary)
        if past is not None:
            k, v = torch.cat([past[0], k], 2), torch.cat([past[1], v], 2)
        mask, causal = None, past is None and T > 1
        if causal and window is not None and T > window:  # a band: causal, and no further back than the window
            i = torch.arange(T, device=x.device)
            mask, causal = (i[:, None] >= i[None, :]) & (i[:, None] - i[None, :] < window), False
        # With a cache, new queries see every cached key; T > 1 only happens without one.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, -1)
        if window is not None:
            k, v = k[:, :, -(window - 1):], v[:, :, -(window - 1):]
        return self.c_proj(y), (k, v)


def rotary(positions: torch.Tensor, head_size: int) -> torch.Tensor:
    """RoFormer's rotations for positions (T,): unit complex numbers (T, head_size / 2)."""
    inv_freq = 1.0 / 10000 ** (torch.arange(0, head_size, 2, device=positions.device, dtype=torch.float32)
                               / head_size)
    angles = positions.float()[:, None] * inv_freq[None, :]
    return torch.polar(torch.ones_like(angles), angles)


def rotate(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x[..., 2i], x[..., 2i + 1]) of x (B, nh, T, hs) by its position's angle,
    as one complex product (fewer kernels than cos/sin arithmetic on halves)."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))  # (B, nh, T, hs / 2)
    return torch.view_as_real(pairs * rot).flatten(-2).to(x.dtype)


def _split_fused_qkv(state, prefix, *_):
    """Weights saved with one fused c_attn projection load into q, k and v."""
    for kind in ("weight", "bias"):
        fused = state.pop(f"{prefix}c_attn.{kind}", None)
        if fused is not None:
            for name, part in zip("qkv", fused.chunk(3, dim=0)):
                state[f"{prefix}{name}.{kind}"] = part


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.mlp = nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd),
                                 nn.Dropout(dropout))

    def forward(self, x, past=None, rotary=None, window=None):
        a, kv = self.attn(self.ln_1(x), past, rotary, window)
        x = x + a
        return x + self.mlp(self.ln_2(x)), kv


@register
class CharTransformer(SequenceModel):
    family = "transformer"
    attacks = ("suffix",)
    explanations = ("attribution",)

    def __init__(self, vocab: str | list[str], block_size: int = 128, n_layer: int = 3, n_head: int = 4,
                 n_embd: int = 96, dropout: float = 0.0, positions: str = "rope"):
        super().__init__()
        if n_embd % n_head:
            raise ConfigError("n_embd must be a multiple of n_head")
        if positions not in POSITIONS:
            raise ConfigError(f"positions must be one of {POSITIONS}, got {positions!r}")
        if positions == "rope" and (n_embd // n_head) % 2:
            raise ConfigError("rotary positions need an even head size (n_embd / n_head)")
        self._set_vocab(vocab)
        self.block_size, self.positions, self.head_size = block_size, positions, n_embd // n_head
        self.use_kv_cache = True  # sampling reuses past keys and values (tests compare with recomputation)
        V = len(self.vocab)
        self.wte = nn.Embedding(V, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd) if positions == "learned" else None
        self.drop = nn.Dropout(dropout)
        self.h = nn.ModuleList(Block(n_embd, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, V, bias=False)
        self.wte.weight = self.lm_head.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    @staticmethod
    def _init_weights(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    @classmethod
    def default_config(cls, meta: dict) -> dict:
        # Melodies are short and few: a shorter context and dropout overfit less.
        extra = {"dropout": 0.1, "block_size": 32} if meta["modality"] == "music" else {}
        return {"family": cls.family, "vocab": meta["vocab"], **extra}

    @classmethod
    def saved_config(cls, config: dict, keys: set[str]) -> dict:
        # Configs saved before rotary positions have no "positions": their weights say which.
        return config if "positions" in config else {**config, "positions": "learned" if "wpe.weight" in keys
                                                      else "rope"}

    strategies = STRATEGIES

    def parallel_plan(self) -> ParallelPlan:
        return ParallelPlan(blocks="h", first=("wte", "drop") + (("wpe",) if self.wpe is not None else ()),
                            last=("ln_f", "lm_head"),
                            tensor={"attn.q": "colwise", "attn.k": "colwise", "attn.v": "colwise",
                                    "attn.c_proj": "rowwise", "mlp.0": "colwise", "mlp.2": "rowwise"})

    def pipeline_inputs(self, batch):
        return self._windows(batch["tokens"])  # (B * windows, T) each

    def stage_forward(self, x, blocks, first, last):
        T = x.shape[1]
        if first:  # x: symbols (b, T) -> (b, T, C)
            x = self._embed(self.wte(x), 0)
        rot = self._rotary(0, T, x.device)
        for block in blocks:
            x, _ = block(x, None, rot)
        return self.lm_head(self.ln_f(x)) if last else x  # (b, T, V) or (b, T, C)

    def pipeline_nll(self, outputs, targets, reduction="mean"):
        return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]).float(), targets.reshape(-1),
                               ignore_index=IGNORE, reduction=reduction)

    @classmethod
    def search_space(cls, meta: dict) -> dict[str, tuple]:
        # Every width divides by every head count.
        return {"lr": ("loguniform", 3e-4, 1e-2), "n_layer": ("choice", [1, 2, 3, 4]),
                "n_embd": ("choice", [32, 64, 96, 128]), "n_head": ("choice", [2, 4]),
                "dropout": ("uniform", 0.0, 0.2), "weight_decay": ("choice", [0.0, 0.1])}

    def make_optimizers(self, settings: OptimizerSettings):
        # Weight decay on matrices and embeddings only, not on biases and layer norms (nanoGPT).
        decay = [p for p in self.parameters() if p.dim() >= 2]
        no_decay = [p for p in self.parameters() if p.dim() < 2]
        return [settings.adamw([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}])]

    # ---- core ---------------------------------------------------------------------
    def logits(self, idx: torch.Tensor, cache: KVCache | None = None,
               start: int | None = None) -> tuple[torch.Tensor, KVCache]:
        """idx (B, T) at positions start.. (default: after the cached ones) -> logits (B, T, V) and
        the new cache. Rotary models take any length; learned positions end at the block."""
        B, T = idx.shape
        start = (cache[0][0].shape[2] if cache else 0) if start is None else start
        if self.wpe is not None and start + T > self.block_size:
            raise ValueError(f"sequence of {start + T} exceeds block size {self.block_size}")
        return self._from_embeddings(self.wte(idx), cache, start)

    def _embed(self, emb: torch.Tensor, start: int) -> torch.Tensor:
        if self.wpe is not None:
            emb = emb + self.wpe(torch.arange(start, start + emb.shape[1], device=emb.device))
        return self.drop(emb)

    def _rotary(self, start: int, T: int, device) -> Rotary | None:
        if self.wpe is not None:
            return None
        return rotary(torch.arange(start, start + T, device=device), self.head_size)

    def _from_embeddings(self, emb: torch.Tensor, cache: KVCache | None, start: int) -> tuple[torch.Tensor, KVCache]:
        """Symbol embeddings (B, T, C) at positions start.. -> logits (B, T, V) and the new cache."""
        x = self._embed(emb, start)  # (B, T, C)
        rot, window = self._rotary(start, emb.shape[1], emb.device), None if self.wpe is not None else self.block_size
        new_cache = []
        for i, block in enumerate(self.h):
            x, kv = block(x, cache[i] if cache else None, rot, window)
            new_cache.append(kv)
        return self.lm_head(self.ln_f(x)), new_cache

    def token_embedding(self) -> nn.Embedding:
        return self.wte

    def logits_from_embeddings(self, emb: torch.Tensor) -> torch.Tensor:
        """emb (B, T, C) -> logits (B, T, V), positions from 0, no cache."""
        if self.wpe is not None and emb.shape[1] > self.block_size:
            raise ValueError(f"sequence of {emb.shape[1]} exceeds block size {self.block_size}")
        return self._from_embeddings(emb, None, 0)[0]

    def _windows(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cut rows (B, L) into (inputs, targets) windows of T = min(block_size, L - 1) positions
        that score every target of a row once: windows step by T, and where (L - 1) % T leaves a
        tail, one more window ends at the row's last symbol, with the targets that the windows
        before it already scored set to IGNORE."""
        B, L = tokens.shape
        T = min(self.block_size, L - 1)
        w = tokens.unfold(1, T + 1, T)  # (B, n, T + 1)
        x, y = w[..., :-1], w[..., 1:]
        tail = (L - 1) - w.shape[1] * T
        if tail:
            last = tokens[:, -(T + 1):]  # (B, T + 1)
            last_y = last[:, 1:].clone()
            last_y[:, : T - tail] = IGNORE
            x, y = torch.cat([x, last[:, None, :-1]], 1), torch.cat([y, last_y[:, None]], 1)
        return x.reshape(-1, T), y.reshape(-1, T)  # (B * windows, T), a row's windows adjacent

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = self._windows(batch["tokens"])
        logits, _ = self.logits(x)
        return {"loss": F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE)}

    @torch.no_grad()
    def eval_nll(self, batch) -> tuple[float, int]:
        x, y = self._windows(batch["tokens"])
        logits, _ = self.logits(x)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=IGNORE,
                              reduction="sum")
        return float(nll), int((y != IGNORE).sum())

    def log_prob(self, x) -> torch.Tensor:
        """Log-probability of each row's symbols after its first (B,), in windows of block_size."""
        tokens = self.tokens(x)
        inp, tgt = self._windows(tokens)
        logits, _ = self.logits(inp)
        lp = torch.log_softmax(logits, -1).gather(2, tgt.clamp(min=0).unsqueeze(2)).squeeze(2)
        return lp.masked_fill(tgt == IGNORE, 0.0).reshape(tokens.shape[0], -1).sum(1)

    # ---- generation (driven by models/sampling.py) ----------------------------------------
    # The state is (symbols so far (B, L), cache). Rotary: the cache rolls, and without one the
    # whole sequence is recomputed under the same window, so both give the same samples. Learned
    # positions: the cache serves while the sequence fits the block, then the last block is
    # recomputed at every step.
    def start(self, idx: torch.Tensor):
        logits, cache = self.logits(idx if self.wpe is None else idx[:, -self.block_size:])
        return logits[:, -1], (idx, cache)

    def advance(self, state, chosen: torch.Tensor):
        idx, cache = state
        idx = torch.cat([idx, chosen.unsqueeze(1)], 1)  # (B, L)
        L = idx.shape[1]
        if self.use_kv_cache and (self.wpe is None or L <= self.block_size):
            logits, cache = self.logits(idx[:, -1:], cache, start=L - 1)
        else:
            logits, cache = self.logits(idx if self.wpe is None else idx[:, -self.block_size:])
        return logits[:, -1], (idx, cache)
