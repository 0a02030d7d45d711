"""The exact evaluator against a brute-force float64 loop, chunked and unchunked."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jl_lightning.baselines import gaussian_baseline, gaussian_matrix
from jl_lightning.distortion import norm_distortion


def brute_force(A, X):
    ratios = [float(np.sum((A @ x) ** 2) / np.sum(x ** 2)) for x in X]
    dev = [abs(r - 1) for r in ratios]
    return max(dev), int(np.argmax(dev)), min(ratios), max(ratios), float(np.mean(dev))


@pytest.mark.parametrize("budget", [1, 700, 2**28])  # 1 byte -> one row per chunk
def test_norm_distortion_equals_brute_force(budget):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((37, 11)) * rng.uniform(0.1, 3, size=(37, 1))
    A = rng.standard_normal((4, 11)) / 2
    report = norm_distortion(A, X, memory_budget=budget)
    eps, worst, rmin, rmax, mean = brute_force(A, X)
    assert report.epsilon == pytest.approx(eps, rel=1e-12)
    assert report.worst_index == worst
    assert report.min_ratio == pytest.approx(rmin, rel=1e-12)
    assert report.max_ratio == pytest.approx(rmax, rel=1e-12)
    assert report.mean_abs == pytest.approx(mean, rel=1e-12)
    assert report.multiplicative == pytest.approx(math.sqrt(rmax / rmin), rel=1e-12)


def test_identity_has_zero_distortion():
    X = np.random.default_rng(1).standard_normal((10, 5))
    assert norm_distortion(np.eye(5), X).epsilon == pytest.approx(0.0, abs=1e-14)


def test_float64_by_default_even_for_float32_input():
    X = torch.randn(20, 8, dtype=torch.float32)
    A = torch.randn(3, 8, dtype=torch.float32)
    report = norm_distortion(A, X)
    eps, *_ = brute_force(A.double().numpy(), X.double().numpy())
    assert report.epsilon == pytest.approx(eps, rel=1e-12)


def test_gaussian_matrix_scaling():
    """E ||A x||^2 = ||x||^2 for A ~ N(0, 1/k): averaged over draws, within 5 standard errors."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, dtype=torch.float64, generator=gen)
    k, draws = 8, 3000
    vals = torch.stack([(gaussian_matrix(k, 40, gen) @ x).pow(2).sum() / x.pow(2).sum()
                        for _ in range(draws)])
    assert abs(float(vals.mean()) - 1) < 5 * math.sqrt(2 / k / draws)


def test_gaussian_baseline_is_seeded_and_consistent():
    X = np.random.default_rng(2).standard_normal((30, 20))
    a = gaussian_baseline(X, 5, draws=20, seed=4)
    b = gaussian_baseline(X, 5, draws=20, seed=4)
    assert a == b
    assert 0 < a["best"] <= a["mean"]
