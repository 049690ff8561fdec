"""The classical baselines of benchmarks/quality.py are proper distributions and forecasts."""
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import baselines  # noqa: E402


@pytest.mark.parametrize("order", [1, 2, 4])
def test_kneser_ney_sums_to_one_after_any_history(order):
    rng = np.random.default_rng(0)
    V = 6
    train = rng.integers(0, V, (40, 30))
    train[:, ::4] = 2  # some structure to learn
    lm = baselines.KneserNey(order, V).fit(train)
    for hist in ([2], [0, 1, 5], [5, 5, 5, 5, 5]):
        rows = np.array([hist + [w] for w in range(V)])
        assert np.exp(lm.target_log_probs(rows)[:, -1]).sum() == pytest.approx(1.0, abs=1e-9)
    if order == 4:  # the structure is learned: after three non-2 symbols a 2 is likely
        assert lm.target_log_probs(np.array([[2, 0, 1, 3, 2]]))[0, -1] > np.log(0.5)


def test_pixel_mixtures_are_normalised_over_8_bit_images():
    # two-pixel images: every one of the 65,536 possible images is scored
    rng = np.random.default_rng(0)
    train = torch.as_tensor(rng.choice([0, 10, 250], size=(300, 1, 1, 2)).astype(np.uint8))
    grid = torch.stack(torch.meshgrid(torch.arange(256), torch.arange(256), indexing="ij"), -1)
    every = grid.reshape(-1, 1, 1, 2).to(torch.uint8)
    for model in (baselines.PixelCategoricalMixture(3, alpha=0.1, iters=5).fit(train),
                  baselines.DiagonalGMM(2, reg_covar=1.0).fit(train)):
        assert torch.exp(-model.nll(every).double()).sum().item() == pytest.approx(1.0, abs=1e-3)


def test_naive_forecasts_and_period_tuning():
    t = np.arange(200, dtype=float)
    season = np.sin(2 * np.pi * t / 7)
    rows, first = np.stack([season[:100], season[100:]]), np.array([0, 0])
    assert baselines.tune_period(rows, first, 20) == 7
    pred, y = baselines.naive_forecasts(rows, first, 7)
    assert np.allclose(pred, y)
