"""Theorem 1's trap: the dataset, its strict local minimum, and the gap between direct
optimization (stuck) and the sampler (escapes) in real jl-train runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jl_lightning.core.trap import trap_completions, trap_matrix, trap_points
from jl_lightning.errors import JLInputError
from jl_lightning.io.sources import TrapPoints


def max_distortion(A, X):
    return float(np.abs(((X @ A.T) ** 2).sum(1) / (X**2).sum(1) - 1).max())


def test_the_construction_has_2k_k_plus_1_points_in_k_plus_1_dimensions():
    k = 5
    X = trap_points(k)
    assert X.shape == (2 * k * (k + 1), k + 1)
    heads = {tuple(row[:k]) for row in X}
    assert len(heads) == k + k * (k - 1) // 2  # e_i and e_i + e_j, i < j
    # each head with the four completions +-a ||x||, +-b ||x||
    a, b = trap_completions(2.0, 0.5)
    assert (a, b) == pytest.approx((math.sqrt(7), math.sqrt(5 / 3)))
    e12 = X[np.all(X[:, :k] == np.eye(k)[0] + np.eye(k)[1], axis=1), k]
    assert sorted(e12) == pytest.approx(sorted(math.sqrt(2) * np.array([a, -a, b, -b])))


@pytest.mark.parametrize("t", [0.3, 0.5, 0.7])
def test_every_point_is_distorted_by_exactly_t_at_c_u_0(t):
    k = 6
    X = trap_points(k, distortion=t)
    A = trap_matrix(k, k + 1)
    ratios = ((X @ A.T) ** 2).sum(1) / (X**2).sum(1)
    assert sorted(set(np.round(ratios, 12))) == pytest.approx([1 - t, 1 + t])
    # a rotation U of the first k coordinates stays in the family: same distortion
    U, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((k, k)))
    assert max_distortion(2 * np.hstack([U, np.zeros((k, 1))]), X) == pytest.approx(t, abs=1e-12)


def test_c_i_0_is_a_strict_local_minimum_of_the_max_distortion():
    k = 6
    X = trap_points(k)
    A = trap_matrix(k, k + 1)
    at_trap = max_distortion(A, X)
    rng = np.random.default_rng(1)
    for _ in range(300):
        direction = rng.standard_normal(A.shape)
        direction /= np.linalg.norm(direction)
        for size in (1e-3, 1e-5):
            assert max_distortion(A + size * direction, X) > at_trap + 0.5 * size * 1e-3
    # while a matrix far from it is much better (what the sampler finds, next test)
    assert at_trap == pytest.approx(0.5)


@pytest.mark.parametrize("kwargs", [dict(k=1), dict(k=4, distortion=1.5), dict(k=4, scale=1.0)])
def test_bad_trap_options_are_refused(kwargs):
    with pytest.raises(JLInputError):
        TrapPoints(**kwargs).load()


def test_direct_optimization_stays_trapped_and_the_sampler_escapes(cfg_factory):
    from jl_lightning.apps.train import train

    common = ["trainer.max_steps=1500", "logger=none", "baseline.draws=20"]
    trapped, _ = train(cfg_factory("experiment=theorem1_trap", *common))
    sampler, _ = train(cfg_factory("experiment=theorem1", *common))
    assert trapped["n"] == 220 and trapped["d"] == 11
    assert trapped["best_distortion"] >= 0.49  # (a): Omega(1), no better than where it started
    assert sampler["best_distortion"] <= 0.25  # (b): at most half the trap's 0.5 (0.066 after 5000 steps)


def test_the_identity_start_is_the_trap_matrix():
    """model.init_mean=identity starts the embedding M / sqrt(k) at the trap's scale [I | 0]."""
    import math

    import torch

    from jl_lightning.lightning.module import initial_mean

    M = initial_mean(3, 5, "identity", 0, 2.0, 0.0, torch.float64)
    np.testing.assert_array_equal(M.numpy() / math.sqrt(3), 2.0 * np.eye(3, 5))
    np.testing.assert_array_equal(M.numpy() / math.sqrt(3), trap_matrix(3, 5))
