"""The exact evaluator against a brute-force float64 loop, chunked and unchunked."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jl_lightning.baselines import gaussian_matrix, random_draws
from jl_lightning.metrics import evaluate
from tests.helpers import pair_ratios


def brute_force(A, X):
    ratios = [float(np.sum((A @ x) ** 2) / np.sum(x**2)) for x in X]
    dev = [abs(r - 1) for r in ratios]
    return max(dev), int(np.argmax(dev)), min(ratios), max(ratios), float(np.mean(dev))


@pytest.mark.parametrize("budget", [1, 700, 2**28])  # 1 byte -> one row per chunk
def test_norms_evaluation_equals_brute_force(budget):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((37, 11)) * rng.uniform(0.1, 3, size=(37, 1))
    A = rng.standard_normal((4, 11)) / 2
    report = evaluate(A, X, "norms", memory_budget=budget)
    eps, worst, rmin, rmax, mean = brute_force(A, X)
    assert report.epsilon == pytest.approx(eps, rel=1e-12)
    assert report.worst_index == worst
    assert report.min_ratio == pytest.approx(rmin, rel=1e-12)
    assert report.max_ratio == pytest.approx(rmax, rel=1e-12)
    assert report.mean_abs == pytest.approx(mean, rel=1e-12)
    assert report.multiplicative == pytest.approx(math.sqrt(rmax / rmin), rel=1e-12)


def test_identity_has_zero_distortion():
    X = np.random.default_rng(1).standard_normal((10, 5))
    assert evaluate(np.eye(5), X, "norms").epsilon == pytest.approx(0.0, abs=1e-14)


def test_float64_by_default_even_for_float32_input():
    X = torch.randn(20, 8, dtype=torch.float32)
    A = torch.randn(3, 8, dtype=torch.float32)
    report = evaluate(A, X, "norms")
    eps, *_ = brute_force(A.double().numpy(), X.double().numpy())
    assert report.epsilon == pytest.approx(eps, rel=1e-12)


def test_gaussian_matrix_scaling():
    """E ||A x||^2 = ||x||^2 for A ~ N(0, 1/k): averaged over draws, within 5 standard errors."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, dtype=torch.float64, generator=gen)
    k, draws = 8, 3000
    vals = torch.stack([(gaussian_matrix(k, 40, gen) @ x).pow(2).sum() / x.pow(2).sum() for _ in range(draws)])
    assert abs(float(vals.mean()) - 1) < 5 * math.sqrt(2 / k / draws)


def test_gaussian_baseline_is_seeded_and_consistent():
    X = np.random.default_rng(2).standard_normal((30, 20))
    a = random_draws("gaussian", X, 5, draws=20, seed=4)[0]
    b = random_draws("gaussian", X, 5, draws=20, seed=4)[0]
    assert a.pop("seconds") > 0 and b.pop("seconds") > 0  # what they cost; every figure is reproducible
    assert a == b
    assert 0 < a["best"] <= a["mean"]


def brute_force_pairs(A, X):
    """Every pair i < j with x_i != x_j (helpers.pair_ratios): deviations, ratios, the worst pair
    and the number of zero-distance pairs."""
    ratios, i, j, zeros = pair_ratios(A, X)
    dev = np.abs(ratios - 1)
    worst = int(np.argmax(dev))
    return dev, ratios, (int(i[worst]), int(j[worst])), zeros


@pytest.mark.parametrize("budget", [1, 5000, 2**28])  # from 1-row blocks to one block
def test_pairs_evaluation_equals_brute_force(budget):

    rng = np.random.default_rng(3)
    X = rng.standard_normal((23, 9))
    X[7] = X[2]  # a duplicate point: skipped and counted, not divided by zero
    A = rng.standard_normal((4, 9)) / 2
    report = evaluate(A, X, "pairs", memory_budget=budget)
    dev, ratios, worst, zeros = brute_force_pairs(A, X)
    assert report.mode == "pairs" and report.count == len(dev) == 23 * 22 // 2 - 1
    assert report.zero_distance_pairs == zeros == 1
    assert report.epsilon == pytest.approx(dev.max(), rel=1e-10)
    assert report.worst_index == worst
    assert report.min_ratio == pytest.approx(ratios.min(), rel=1e-10)
    assert report.max_ratio == pytest.approx(ratios.max(), rel=1e-10)
    assert report.mean_abs == pytest.approx(dev.mean(), rel=1e-10)
    assert report.median_abs == pytest.approx(np.quantile(dev, 0.5), rel=1e-10)
    assert report.p99_abs == pytest.approx(np.quantile(dev, 0.99), rel=1e-10)


def test_norm_quantiles_equal_numpy():
    rng = np.random.default_rng(4)
    X, A = rng.standard_normal((101, 7)), rng.standard_normal((3, 7))
    ratios = np.sum((X @ A.T) ** 2, 1) / np.sum(X**2, 1)
    report = evaluate(A, X, "norms", memory_budget=300)
    assert report.median_abs == pytest.approx(np.quantile(np.abs(ratios - 1), 0.5), rel=1e-12)
    assert report.p99_abs == pytest.approx(np.quantile(np.abs(ratios - 1), 0.99), rel=1e-12)


def test_an_operator_is_applied_without_a_matrix():
    from jl_lightning.metrics.distortion import evaluate

    rng = np.random.default_rng(5)
    X, A = rng.standard_normal((30, 8)), rng.standard_normal((3, 8))

    class Operator:
        d = 8

        def apply(self, points):
            return points @ torch.as_tensor(A).T

    for mode in ("norms", "pairs"):
        assert evaluate(Operator(), X, mode).to_dict() == evaluate(A, X, mode).to_dict()


def test_bad_calls_are_refused():
    from jl_lightning.metrics.distortion import evaluate

    with pytest.raises(ValueError, match="mode must be one of"):
        evaluate(np.eye(3), np.ones((4, 3)), "triples")
    with pytest.raises(ValueError, match="the linear map expects d=3"):
        evaluate(np.eye(3), np.ones((4, 5)))
    with pytest.raises(ValueError, match="pairs mode needs at least 2 points"):
        evaluate(np.eye(3), np.ones((1, 3)), "pairs")
    with pytest.raises(ValueError, match="every pair of points is at distance zero"):
        evaluate(np.eye(3), np.ones((4, 3)), "pairs")


def test_many_maps_in_one_pass_equal_brute_force():
    """A list of maps (dense and the SRHT operator) shares one pass; each report equals numpy."""
    import itertools

    from jl_lightning.baselines import random_map

    X = np.random.default_rng(3).standard_normal((70, 12))
    X[5] = X[9]  # a duplicate pair
    gen = torch.Generator().manual_seed(0)
    maps = [random_map(m, 4, 12, gen) for m in ("gaussian", "sparse", "srht", "rademacher")]
    dense = [m.apply(torch.eye(12, dtype=torch.float64)).T.numpy() if hasattr(m, "apply") else m.numpy() for m in maps]
    pairs = [(i, j) for i, j in itertools.combinations(range(70), 2) if not np.allclose(X[i], X[j])]
    diffs = np.array([X[i] - X[j] for i, j in pairs])
    for mode, vectors in (("norms", X), ("pairs", diffs)):
        reports = evaluate(maps, X, mode, quantiles=False, memory_budget=20_000)
        for report, A in zip(reports, dense):
            ratios = ((vectors @ A.T) ** 2).sum(1) / (vectors**2).sum(1)
            assert report.epsilon == pytest.approx(np.abs(ratios - 1).max(), rel=1e-12)
            assert report.min_ratio == pytest.approx(ratios.min(), rel=1e-12)
            assert report.max_ratio == pytest.approx(ratios.max(), rel=1e-12)
            assert report.mean_abs == pytest.approx(np.abs(ratios - 1).mean(), rel=1e-10)
            assert report.count == len(vectors)


def test_ratio_histogram_counts_every_exact_ratio():

    X = np.random.default_rng(4).standard_normal((40, 6))
    A = np.random.default_rng(5).standard_normal((3, 6)) / np.sqrt(3)
    edges = np.linspace(0, 2, 21)
    ratios = [
        np.sum((A @ (X[i] - X[j])) ** 2) / np.sum((X[i] - X[j]) ** 2) for i in range(40) for j in range(i + 1, 40)
    ]
    expected = np.histogram(np.clip(ratios, 0, 2 - 1e-12), bins=edges)[0]
    np.testing.assert_array_equal(evaluate(A, X, "pairs", histogram=edges, memory_budget=3000).histogram, expected)
    assert evaluate(A, X, "norms", histogram=edges).histogram.sum() == 40


@pytest.mark.parametrize("scale", [1.0, 1e-3])
def test_screened_evaluation_gives_the_float64_extremes(scale):

    rng = np.random.default_rng(6)
    X = (rng.standard_normal((9000, 300)) * scale).astype(np.float32)  # more than one float32 tile
    A = rng.standard_normal((20, 300)) / np.sqrt(20)
    fast, exact = evaluate(A, X, "norms", screen=True), evaluate(A, X, "norms", screen=False)
    assert fast.worst_index == exact.worst_index
    for field in ("epsilon", "min_ratio", "max_ratio"):
        assert getattr(fast, field) == pytest.approx(getattr(exact, field), rel=1e-13)
    # the float32 statistics are within the stated bound (and in practice far closer)
    for field in ("mean_abs", "median_abs", "p99_abs"):
        assert getattr(fast, field) == pytest.approx(getattr(exact, field), abs=1e-5)
    # a learned-quality matrix: every ratio within 1e-4 of 1, candidates are many, answer still exact
    Q, _ = np.linalg.qr(rng.standard_normal((300, 300)))
    X2 = (rng.standard_normal((500, 20)) @ Q[:20]).astype(np.float32)
    A2 = Q[:20] * (1 + 1e-5 * rng.standard_normal((20, 1)))
    assert evaluate(A2, X2, screen=True).epsilon == pytest.approx(evaluate(A2, X2, screen=False).epsilon, rel=1e-10)


def test_the_heartbeat_speaks_every_30_s_with_the_fraction_and_the_time_left():
    from jl_lightning.metrics.heartbeat import Heartbeat

    now = [100.0]
    beat = Heartbeat("exact pass", 10, every_s=30, clock=lambda: now[0])
    for done, at in enumerate([110, 125, 131, 150, 161.5, 170, 190, 193, 200, 205], start=1):
        now[0] = at
        beat.tick(done)
    # a line where 30 s passed since the start or the last line: at 131, 161.5 and 193
    assert beat.lines == [
        "exact pass: 30 % (3 of 10 tiles), 31 s, about 72 s left",
        "exact pass: 50 % (5 of 10 tiles), 62 s, about 62 s left",
        "exact pass: 80 % (8 of 10 tiles), 93 s, about 23 s left",
    ]
