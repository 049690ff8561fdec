"""AR(p) for a real-valued series, fitted by least squares from sufficient statistics.

Each worker sums X'X, X'y and y'y over its shard's windows (X rows are [1, y[t-1], ...,
y[t-max_order]]); reduce_statistics() all-reduces them and solves the normal equations for
every order up to max_order, keeping the one with the lowest AIC. All orders are compared on
the same targets (those with max_order values of history), so the choice is fair. The noise is
Gaussian with the residual variance, so the likelihood is exact and sample paths are the
model's own: forecasts with noise.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from genray.models.base import GenerativeModel, per_row
from genray.models.catalog import register
from genray.models.errors import ConfigError, DataError, OptionError


@register
class AutoRegressive(GenerativeModel):
    family = "ar"
    strategies = ("ddp",)  # one least-squares solve over summed statistics
    explanations = ("attribution", "pdp")
    modality = "series"
    sample_options = frozenset({"prompt", "max_tokens", "temperature"})
    nll_unit = "nats/value"

    def __init__(self, max_order: int = 16, order: int | None = None, ridge: float = 1e-8):
        super().__init__()
        if max_order < 1 or (order is not None and not 1 <= order <= max_order):
            raise ConfigError("need 1 <= order <= max_order")
        self.max_order, self.fixed_order, self.ridge = max_order, order, ridge
        P = max_order + 1
        for name, shape in (("xtx", (P, P)), ("xty", (P,)), ("yty", ()), ("count", ())):
            self.register_buffer(name, torch.zeros(shape, dtype=torch.float64))
            self.register_buffer(f"pending_{name}", torch.zeros(shape, dtype=torch.float64), persistent=False)
        self.register_buffer("coef", torch.zeros(P, dtype=torch.float64))  # [intercept, a_1, ..., a_max]
        self.register_buffer("sigma2", torch.ones((), dtype=torch.float64))
        self.register_buffer("order", torch.tensor(order or 0))

    @classmethod
    def default_config(cls, meta: dict) -> dict:
        return {"family": cls.family, "max_order": min(16, meta.get("context", 16))}

    @classmethod
    def search_space(cls, meta: dict) -> dict[str, tuple]:
        # Least squares, not gradients: the lag order and the ridge are what there is to choose.
        top = meta.get("context", 16)
        return {"max_order": ("choice", [p for p in (2, 4, 8, 16, 32) if p <= top] or [top]),
                "ridge": ("loguniform", 1e-10, 1e-2)}

    # ---- statistics ---------------------------------------------------------------------
    def _design(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows X (N, P) and targets y (N,) of every value with max_order values of history in
        its window, from the window's first uncovered value on."""
        series, first = batch["series"].double(), batch["first"]  # (B, W), (B,)
        p = self.max_order
        if series.shape[1] <= p:
            raise DataError(f"windows of {series.shape[1]} values are too short for max_order {p}")
        win = series.unfold(1, p + 1, 1)  # (B, W - p, p + 1): win[b, j] = series[b, j : j + p + 1]
        t = torch.arange(p, series.shape[1], device=series.device)  # target index of each window
        keep = t.unsqueeze(0) >= first.unsqueeze(1).clamp(min=p)  # (B, W - p)
        win = win[keep]  # (N, p + 1)
        X = torch.cat([torch.ones(len(win), 1, dtype=win.dtype, device=win.device), win[:, :-1].flip(1)], 1)  # lags
        return X, win[:, -1]

    def train_step(self, batch, optimizers, forward=None, max_grad_norm=None) -> dict[str, float]:
        X, y = self._design(batch)
        self.pending_xtx += X.T @ X
        self.pending_xty += X.T @ y
        self.pending_yty += y @ y
        self.pending_count += len(y)
        return {"values": float(len(y))}

    def reduce_statistics(self, all_reduce) -> None:
        # Each epoch re-sums from scratch, so extra or resumed epochs give the same fit.
        for name in ("xtx", "xty", "yty", "count"):
            pend = getattr(self, f"pending_{name}")
            all_reduce(pend)
            getattr(self, name).copy_(pend)
            pend.zero_()
        self.fit()

    def _solve(self, p: int) -> tuple[torch.Tensor, float]:
        A = self.xtx[: p + 1, : p + 1].clone()
        A[1:, 1:] += self.ridge * torch.eye(p, dtype=A.dtype, device=A.device) * A.diagonal()[1:].mean()
        coef = torch.linalg.solve(A, self.xty[: p + 1])
        sse = self.yty - 2 * coef @ self.xty[: p + 1] + coef @ self.xtx[: p + 1, : p + 1] @ coef
        return coef, float(sse.clamp(min=1e-12))

    def fit(self) -> None:
        n = float(self.count)
        if n <= self.max_order + 1:
            raise DataError(f"{n:.0f} training values are too few for max_order {self.max_order}")
        orders = [self.fixed_order] if self.fixed_order else range(1, self.max_order + 1)
        best = min(orders, key=lambda p: n * math.log(self._solve(p)[1] / n) + 2 * (p + 1))  # AIC
        coef, sse = self._solve(best)
        self.coef.zero_()
        self.coef[: best + 1] = coef
        self.sigma2.fill_(sse / (n - best - 1))
        self.order.fill_(best)

    # ---- likelihood and forecasts ---------------------------------------------------------
    def one_step(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """One-step-ahead forecasts and the values they forecast, (N,) each."""
        X, y = self._design(batch)
        return X @ self.coef, y

    @torch.no_grad()
    def eval_nll(self, batch) -> tuple[float, int]:
        pred, y = self.one_step(batch)
        nll = 0.5 * math.log(2 * math.pi * float(self.sigma2)) + (y - pred) ** 2 / (2 * self.sigma2)
        return float(nll.sum()), len(y)

    def log_prob(self, x) -> torch.Tensor:
        """Log-density of each series' values after its first max_order, given those (B,)."""
        series = torch.as_tensor(x, dtype=torch.float64, device=self.coef.device)
        series = series.unsqueeze(0) if series.dim() == 1 else series  # (B, L)
        first = torch.zeros(len(series), dtype=torch.long, device=series.device)
        pred, y = self.one_step({"series": series, "first": first})
        lp = -0.5 * math.log(2 * math.pi * float(self.sigma2)) - (y - pred) ** 2 / (2 * self.sigma2)
        return lp.reshape(len(series), -1).sum(1)

    @property
    def mean(self) -> float:
        """The stationary mean, or the intercept alone for a non-stationary fit."""
        s = float(self.coef[1:].sum())
        return float(self.coef[0]) / (1 - s) if abs(1 - s) > 1e-6 else float(self.coef[0])

    @staticmethod
    def _one_history(prompt: Any) -> bool:
        """A prompt is one history for every row (None, or a list of numbers), or one per row."""
        return not isinstance(prompt, (list, tuple)) or bool(prompt) and isinstance(prompt[0], (int, float))

    def _histories(self, prompt: Any, n: int) -> list:
        return [prompt] * n if self._one_history(prompt) else per_row(prompt, n)

    def check_options(self, prompt: Any = None, **_: Any) -> None:
        order = int(self.order)
        for pr in [prompt] if self._one_history(prompt) else prompt:
            if pr and len(pr) < order:
                raise OptionError(f"prompt needs at least {order} values (the model's order), got {len(pr)}",
                                  "prompt")

    def _sample(self, n: int, gens: list[torch.Generator], *, prompt: Any = None, max_tokens: Any = 32,
                temperature: Any = 1.0) -> list[list[float]]:
        """Sample paths of max_tokens values continuing each row's prompt (a list of at least
        `order` numbers); without one, a path from the stationary process (after a burn-in).
        temperature scales the noise; 0 < temperature, small values approach the mean forecast."""
        p, coef = self.max_order, self.coef.cpu()  # a scalar recursion: the CPU is the right place
        prompts, steps, temps = self._histories(prompt, n), per_row(max_tokens, n), per_row(temperature, n)
        burn = 10 * p + 100
        hist = torch.full((n, p), self.mean, dtype=torch.float64)  # (n, p), newest last
        for i, pr in enumerate(prompts):
            if pr:
                tail = torch.tensor(pr[-p:], dtype=torch.float64)
                hist[i, p - len(tail):] = tail
        T = max(int(s) for s in steps)
        # Each row draws exactly its own burn + steps normals, so its path is the same in any batch.
        noise = torch.zeros(n, burn + T, dtype=torch.float64)
        for i, g in enumerate(gens):
            noise[i, : burn + int(steps[i])] = torch.randn(burn + int(steps[i]), generator=g, dtype=torch.float64)
        noise *= self.sigma2.cpu().sqrt() * torch.tensor([float(t) for t in temps], dtype=torch.float64).unsqueeze(1)
        cold = torch.tensor([not pr for pr in prompts])
        out = torch.empty(n, T, dtype=torch.float64)
        a = coef[1:].flip(0)  # weights for hist, oldest first
        for s in range(burn + T):
            if s < burn and not bool(cold.any()):
                continue
            nxt = coef[0] + hist @ a + noise[:, s]
            if s < burn:  # only rows without a prompt burn in
                nxt = torch.where(cold, nxt, hist[:, -1])
                hist = torch.where(cold.unsqueeze(1), torch.cat([hist[:, 1:], nxt.unsqueeze(1)], 1), hist)
                continue
            out[:, s - burn] = nxt
            hist = torch.cat([hist[:, 1:], nxt.unsqueeze(1)], 1)
        return [out[i, : int(steps[i])].tolist() for i in range(n)]
