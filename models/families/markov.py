"""Order-n Markov chain over characters with interpolated absolute-discounting smoothing.

Counts of every k-gram (k = 1..n+1) are sufficient statistics: each worker counts its
shard in train_step and reduce_statistics() sums them across workers, so training is
data-parallel with no gradients. The smoothed distribution sums to one exactly and
log_prob is exact.
"""
from __future__ import annotations

import torch

from genray.models.base import SequenceModel
from genray.models.catalog import register
from genray.models.errors import ConfigError

MAX_TABLE = 2**26  # dense count cells in the top order (256 MiB of float32)


@register
class MarkovChain(SequenceModel):
    family = "markov"
    strategies = ("ddp",)  # counts summed across workers
    explanations = ("exact",)  # its next-symbol probabilities are counts: nothing to attribute

    def __init__(self, vocab: str | list[str], order: int = 3, discount: float = 0.75):
        super().__init__()
        self._set_vocab(vocab)
        V = len(self.vocab)
        if order < 0:
            raise ConfigError("order must be >= 0")
        if V ** (order + 1) > MAX_TABLE:
            raise ConfigError(f"order {order} over {V} symbols needs {V ** (order + 1):,} cells; "
                             f"lower the order (limit {MAX_TABLE:,})")
        if not 0 < discount < 1:
            raise ConfigError("discount must be in (0, 1)")
        self.order, self.discount = order, discount
        for k in range(order + 1):
            # counts{k}[h, c]: times symbol c followed the k-symbol context h (base-V number)
            self.register_buffer(f"counts{k}", torch.zeros(V**k, V))
            self.register_buffer(f"pending{k}", torch.zeros(V**k, V), persistent=False)
        self._derive()
        # Dense tables are mostly zeros: weights files hold only the non-zero cells.
        self._register_state_dict_hook(_sparsify)
        self._register_load_state_dict_pre_hook(_densify, with_module=True)

    @classmethod
    def default_config(cls, meta: dict) -> dict:
        V = len(meta["vocab"])
        order = max([o for o in range(1, 4) if V ** (o + 1) <= MAX_TABLE], default=0)
        return {"family": cls.family, "vocab": meta["vocab"], "order": order}

    @classmethod
    def search_space(cls, meta: dict) -> dict[str, tuple]:
        # Counts, not gradients: no learning rate; orders whose table fits.
        V = len(meta["vocab"])
        orders = [o for o in range(0, 7) if V ** (o + 1) <= MAX_TABLE]
        return {"order": ("choice", orders), "discount": ("uniform", 0.3, 0.95)}

    def counts(self, k: int) -> torch.Tensor:
        return getattr(self, f"counts{k}")

    def _derive(self) -> None:
        """Per-context totals and distinct-successor counts, the smoothing's only inputs."""
        self._tot = [self.counts(k).sum(1) for k in range(self.order + 1)]
        self._n1 = [(self.counts(k) > 0).sum(1).to(self._tot[0].dtype) for k in range(self.order + 1)]

    def _apply(self, fn, *args, **kwargs):
        # The derived tables are plain tensors: rebuild them on the counts' new device.
        out = super()._apply(fn, *args, **kwargs)
        self._derive()
        return out

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self._derive()

    # ---- training -----------------------------------------------------------------
    def train_step(self, batch, optimizers, forward=None, max_grad_norm=None) -> dict[str, float]:
        tokens = batch["tokens"]  # (B, L)
        V, L = len(self.vocab), tokens.shape[1]
        for k in range(min(self.order, L - 1) + 1):
            idx = self._context_index(tokens, k)[:, k:] * V + tokens[:, k:]  # (B, L-k)
            pend = getattr(self, f"pending{k}")
            flat = idx.reshape(-1)
            pend.view(-1).index_put_((flat,), torch.ones_like(flat, dtype=pend.dtype), accumulate=True)
        return {"chars": float(tokens.numel())}

    def reduce_statistics(self, all_reduce) -> None:
        # Each epoch recounts from scratch, so extra epochs (or a resumed one) give the same model.
        for k in range(self.order + 1):
            pend = getattr(self, f"pending{k}")
            all_reduce(pend)
            self.counts(k).copy_(pend)
            pend.zero_()
        self._derive()

    # ---- probabilities ----------------------------------------------------------------
    def _context_index(self, tokens: torch.Tensor, k: int) -> torch.Tensor:
        """(B, L) base-V index of the k symbols before each position; positions < k get 0."""
        V = len(self.vocab)
        idx = torch.zeros_like(tokens)
        for j in range(1, k + 1):  # the symbol j places back is digit j-1
            idx[:, j:] += tokens[:, :-j] * V ** (j - 1)
        return idx

    def _interpolate(self, k, ctx, c, p_lower):
        tot, n1 = self._tot[k][ctx], self._n1[k][ctx]
        if c.dim() > tot.dim():
            tot, n1 = tot.unsqueeze(-1), n1.unsqueeze(-1)
        mixed = ((c - self.discount).clamp(min=0) + self.discount * n1 * p_lower) / tot.clamp(min=1)
        return torch.where(tot > 0, mixed, p_lower)

    def token_log_probs(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, L) natural log-probability of each symbol given up to `order` symbols before it."""
        V, L = len(self.vocab), tokens.shape[1]
        pos = torch.arange(L, device=tokens.device).expand_as(tokens)
        p = torch.full(tokens.shape, 1.0 / V, dtype=torch.float64, device=tokens.device)
        for k in range(self.order + 1):
            ctx = self._context_index(tokens, k)
            c = self.counts(k)[ctx, tokens].double()
            p = torch.where(pos >= k, self._interpolate(k, ctx, c, p), p)
        return p.log()

    def next_probs(self, history: torch.Tensor) -> torch.Tensor:
        """(B, V) next-symbol distribution after history (B, order), -1 marking missing symbols."""
        V, B = len(self.vocab), history.shape[0]
        dev = history.device
        p = torch.full((B, V), 1.0 / V, dtype=torch.float64, device=dev)
        ctx = torch.zeros(B, dtype=torch.long, device=dev)
        for k in range(self.order + 1):
            if k > 0:
                prev = history[:, -k]
                ok = prev >= 0
                ctx = ctx + prev.clamp(min=0) * V ** (k - 1)
                if not bool(ok.any()):
                    break
            else:
                ok = torch.ones(B, dtype=torch.bool, device=dev)
            q = self._interpolate(k, ctx, self.counts(k)[ctx].double(), p)
            p = torch.where(ok.unsqueeze(1), q, p)
        return p

    @torch.no_grad()
    def eval_nll(self, batch) -> tuple[float, int]:
        tokens = batch["tokens"]
        return float(-self.token_log_probs(tokens).sum()), tokens.numel()

    def log_prob(self, x) -> torch.Tensor:
        tokens = self.tokens(x)
        return self.token_log_probs(tokens).sum(1)

    # ---- generation (driven by models/sampling.py) ----------------------------------------
    def start(self, idx: torch.Tensor):
        width = max(self.order, 1)
        hist = torch.full((idx.shape[0], width), -1, dtype=torch.long, device=idx.device)  # (B, order)
        tail = idx[:, -width:]
        hist[:, width - tail.shape[1]:] = tail
        return self.next_probs(hist).log(), hist

    def advance(self, hist: torch.Tensor, chosen: torch.Tensor):
        hist = torch.cat([hist[:, 1:], chosen.unsqueeze(1)], 1)
        return self.next_probs(hist).log(), hist


def _sparsify(module: MarkovChain, state: dict, prefix: str, local_metadata) -> dict:
    for k in range(module.order + 1):
        dense = state.pop(f"{prefix}counts{k}")
        flat = dense.reshape(-1)
        nz = flat.nonzero().squeeze(1)
        state[f"{prefix}counts{k}.index"] = nz
        state[f"{prefix}counts{k}.value"] = flat[nz]
    return state


def _densify(module: MarkovChain, state: dict, prefix: str, *args) -> None:
    for k in range(module.order + 1):
        key = f"{prefix}counts{k}"
        if f"{key}.index" in state:
            dense = torch.zeros_like(module.counts(k))
            dense.view(-1)[state.pop(f"{key}.index")] = state.pop(f"{key}.value").to(dense.dtype)
            state[key] = dense
