"""Classical baselines for benchmarks/quality.py, each tuned on training data only.

- KneserNey: interpolated modified Kneser-Ney n-gram over symbol rows (Chen & Goodman, 1998),
  counted with numpy on int64 n-gram codes; scores exactly the targets the neural models score
  (every symbol of a row after its first, with the row's earlier symbols as history).
- PixelCategoricalMixture: a mixture of products of per-pixel 256-way categoricals, fitted by
  EM; its likelihood of 8-bit images is exact.
- DiagonalGMM: sklearn's GaussianMixture (diagonal), scored as a discrete distribution by
  integrating each component over the pixel bins, so bits/dim compare with the others.
- naive forecasts: last value, and seasonal naive with the period that fits training data best.
"""
from __future__ import annotations

import math

import numpy as np
import torch

# ---- Kneser-Ney ------------------------------------------------------------------------------

class KneserNey:
    def __init__(self, order: int, vocab_size: int):
        self.n, self.V = order, vocab_size
        if vocab_size ** order >= 2**63:
            raise ValueError(f"order {order} over {vocab_size} symbols overflows int64 codes")

    def _codes(self, rows: np.ndarray, k: int) -> np.ndarray:
        """(B, L - k + 1) code of the k-gram ending at each position >= k - 1; newest symbol = digit 0."""
        B, L = rows.shape
        code = np.zeros((B, L - k + 1), dtype=np.int64)
        for j in range(k):
            code += rows[:, k - 1 - j: L - j].astype(np.int64) * self.V ** j
        return code

    @staticmethod
    def _discounts(counts: np.ndarray) -> np.ndarray:
        n = [(counts == i).sum() for i in (1, 2, 3, 4)]
        if min(n) == 0:
            return np.array([0.5, 1.0, 1.5])
        Y = n[0] / (n[0] + 2 * n[1])
        return np.clip([1 - 2 * Y * n[1] / n[0], 2 - 3 * Y * n[2] / n[1], 3 - 4 * Y * n[3] / n[2]], 0.05, None)

    def fit(self, rows: np.ndarray) -> "KneserNey":
        self.levels = []
        top = None
        for k in range(self.n, 0, -1):
            codes = self._codes(rows, k).ravel()
            if k == self.n:
                grams, cnt = np.unique(codes, return_counts=True)
            else:  # continuation counts: distinct one-symbol-longer left extensions
                grams, cnt = np.unique(top % self.V ** k, return_counts=True)
            top = grams
            D = self._discounts(cnt)
            ctx = grams // self.V
            hs, inv = np.unique(ctx, return_inverse=True)
            tot = np.bincount(inv, weights=cnt)
            nk = [np.bincount(inv, weights=(cnt == c)) for c in (1, 2)] + [np.bincount(inv, weights=(cnt >= 3))]
            gamma = (D[0] * nk[0] + D[1] * nk[1] + D[2] * nk[2]) / tot
            self.levels.insert(0, dict(grams=grams, cnt=cnt, D=D, hs=hs, tot=tot, gamma=gamma))
        return self

    @staticmethod
    def _lookup(keys: np.ndarray, table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = np.searchsorted(table, keys).clip(max=len(table) - 1)
        return i, table[i] == keys

    def target_log_probs(self, rows: np.ndarray) -> np.ndarray:
        """Natural log-probability of rows[:, 1:] given each row's earlier symbols (B, L - 1)."""
        B, L = rows.shape
        p = np.full((B, L - 1), 1.0 / self.V)
        for k, lv in enumerate(self.levels, 1):
            if k > L:  # no k-gram fits in these rows
                break
            codes = np.zeros((B, L - 1), dtype=np.int64)
            valid = np.zeros((B, L - 1), dtype=bool)
            c = self._codes(rows, k)  # k-grams ending at positions k-1 .. L-1
            start = max(k - 1, 1)  # targets are positions 1 .. L-1
            codes[:, start - 1:] = c[:, start - (k - 1):]
            valid[:, start - 1:] = True
            gi, found = self._lookup(codes, lv["grams"])
            cnt = np.where(found, lv["cnt"][gi], 0)
            hi, seen = self._lookup(codes // self.V, lv["hs"])
            tot, gamma = lv["tot"][hi], lv["gamma"][hi]
            D = np.where(cnt == 0, 0.0, lv["D"][np.clip(cnt, 1, 3) - 1])
            mixed = (np.maximum(cnt - D, 0) + gamma * tot * p) / np.where(seen, tot, 1.0)
            p = np.where(valid & seen, mixed, p)
        return np.log(p)


def tune_kneser_ney(train: np.ndarray, val: np.ndarray, vocab_size: int, orders) -> tuple[int, dict]:
    """The order whose model, fitted on the training rows, has the lowest NLL on the validation
    rows: chosen as genray's models choose their published epoch."""
    scores = {}
    for n in orders:
        if vocab_size ** n >= 2**63:
            break
        lm = KneserNey(n, vocab_size).fit(train)
        scores[n] = float(-lm.target_log_probs(val).mean())
    return min(scores, key=scores.get), scores


# ---- image likelihood baselines ---------------------------------------------------------------

class PixelCategoricalMixture:
    """p(x) = sum_k pi_k prod_d theta_k[d, x_d], with a Dirichlet(alpha) prior on every theta row."""

    def __init__(self, components: int, alpha: float = 0.1, iters: int = 30, seed: int = 0):
        self.K, self.alpha, self.iters, self.seed = components, alpha, iters, seed

    def _log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """(N, K) log pi_k + log p(x | k) for uint8 images flattened to (N, D)."""
        D = x.shape[1]
        idx = (torch.arange(D) * 256 + x.long())  # (N, D) into the flattened (D * 256) table
        out = torch.stack([self.log_theta[k][idx].sum(1) for k in range(self.K)], 1)
        return out + self.log_pi

    def fit(self, images: torch.Tensor) -> "PixelCategoricalMixture":
        x = images.reshape(len(images), -1)
        N, D = x.shape
        g = torch.Generator().manual_seed(self.seed)
        resp = -torch.rand(N, self.K, generator=g).log()  # a soft random start: Dirichlet(1) rows
        resp /= resp.sum(1, keepdim=True)
        flat = (torch.arange(D) * 256 + x.long()).reshape(-1)
        for _ in range(self.iters):
            counts = torch.full((self.K, D * 256), self.alpha, dtype=torch.float64)
            for i in range(0, N, 256):  # M-step: expected counts of every pixel value
                r = resp[i:i + 256].double()  # (b, K)
                fi = flat[i * D:(i + len(r)) * D]
                counts.index_add_(1, fi, r.T.repeat_interleave(D, dim=1))
            theta = counts.view(self.K, D, 256)
            self.log_theta = (theta / theta.sum(2, keepdim=True)).log().float().view(self.K, -1)
            self.log_pi = (resp.sum(0).double() + 1.0).div(N + self.K).log().float()
            resp = torch.softmax(self._log_joint(x), 1)  # E-step
        return self

    def nll(self, images: torch.Tensor) -> torch.Tensor:
        x = images.reshape(len(images), -1)
        return -torch.logsumexp(self._log_joint(x).double(), 1)  # (N,) nats

    def sample(self, n: int, shape, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        k = torch.multinomial(self.log_pi.exp(), n, replacement=True, generator=g)
        probs = self.log_theta.view(self.K, -1, 256).exp()[k]  # (n, D, 256)
        x = torch.multinomial(probs.reshape(-1, 256), 1, generator=g).view(n, *shape)
        return x.float() / 255.0


class DiagonalGMM:
    """sklearn GaussianMixture on pixel values, scored as a distribution over 8-bit pixels."""

    def __init__(self, components: int, reg_covar: float = 1.0, seed: int = 0):
        self.K, self.reg, self.seed = components, reg_covar, seed

    def fit(self, images: torch.Tensor) -> "DiagonalGMM":
        from sklearn.mixture import GaussianMixture

        x = images.reshape(len(images), -1).double().numpy()
        self.gmm = GaussianMixture(self.K, covariance_type="diag", reg_covar=self.reg, random_state=self.seed,
                                   max_iter=100).fit(x)
        return self

    def nll(self, images: torch.Tensor) -> torch.Tensor:
        x = images.reshape(len(images), -1).double()  # (N, D)
        mu = torch.as_tensor(self.gmm.means_)  # (K, D)
        sd = torch.as_tensor(self.gmm.covariances_).sqrt()
        lo = torch.where(x == 0, -math.inf, x - 0.5)
        hi = torch.where(x == 255, math.inf, x + 0.5)
        out = []
        for k in range(self.K):  # log of the Gaussian mass of each pixel's bin
            a, b = (lo - mu[k]) / sd[k], (hi - mu[k]) / sd[k]
            # upper-tail bins use the mirrored CDF, where the lower one would round to 1
            upper = a > 0
            la, lb = torch.where(upper, torch.special.log_ndtr(-b), torch.special.log_ndtr(a)), \
                torch.where(upper, torch.special.log_ndtr(-a), torch.special.log_ndtr(b))
            mass = lb + torch.log1p(-torch.exp((la - lb).clamp(max=-1e-12)))
            out.append(mass.sum(1) + math.log(self.gmm.weights_[k]))
        return -torch.logsumexp(torch.stack(out, 1), 1)


def bits_per_dim(nll_nats: torch.Tensor, dims: int) -> float:
    return float(nll_nats.mean()) / (dims * math.log(2))


def tune_image_baseline(train: torch.Tensor, val: torch.Tensor, make, grid):
    """The setting in grid whose model, fitted on the training images, has the lowest NLL on the
    validation images; returns it, its fitted model and every setting's score."""
    scores, models = {}, {}
    for setting in grid:
        key = tuple(setting.items())
        models[key] = make(**setting).fit(train)
        scores[key] = float(models[key].nll(val).mean())
    best = min(scores, key=scores.get)
    return dict(best), models[best], scores


# ---- forecasts -----------------------------------------------------------------------------

def naive_forecasts(series: np.ndarray, first: np.ndarray, period: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Seasonal-naive one-step forecasts y[t - period] of every target value (t >= first of its row)."""
    preds, ys = [], []
    for row, f in zip(series, first):
        t = np.arange(max(int(f), period), len(row))
        preds.append(row[t - period])
        ys.append(row[t])
    return np.concatenate(preds), np.concatenate(ys)


def tune_period(series: np.ndarray, first: np.ndarray, max_period: int) -> int:
    """The seasonal period (2 or more: 1 is the last-value forecast) whose naive forecast has the
    lowest MSE on the given windows (the validation segment), all periods scored on the same
    targets."""
    mse = {}
    for p in range(2, max_period + 1):
        pred, y = naive_forecasts(series, np.maximum(first, max_period), p)
        mse[p] = float(((pred - y) ** 2).mean())
    return min(mse, key=mse.get)
