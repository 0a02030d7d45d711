"""NuMax (baselines/numax.py) against checks that do not trust the solver, and recall@K
(metrics/neighbors.py) against a brute-force count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jl_lightning.metrics.neighbors import recall_at_k


def all_secant_values(P: np.ndarray, X: np.ndarray) -> np.ndarray:
    """v^T P v for every normalized secant of X, by explicit vectors."""
    i, j = np.triu_indices(len(X), 1)
    v = X[i] - X[j]
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    return np.einsum("md,de,me->m", v, P, v)


def test_numax_meets_its_constraints_on_every_secant():
    from jl_lightning.baselines.numax import numax

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 6)) @ np.diag([3, 2, 1, 1, 0.5, 0.2])
    delta = 0.2
    sol = numax(X, delta, initial=50, add=40)  # 780 secants: several rounds of column generation
    values = all_secant_values(sol.P, X)
    assert np.abs(values - 1).max() <= delta * (1 + 2e-3)
    assert sol.rounds > 1 and sol.secants < 780
    assert sol.epsilon_all == pytest.approx(np.abs(values - 1).max(), abs=1e-9)
    # P is PSD and Psi reproduces it on its range
    assert np.linalg.eigvalsh(sol.P).min() > -1e-6
    np.testing.assert_allclose(sol.psi.T @ sol.psi, sol.P, atol=1e-5 * np.abs(sol.P).max())
    # the relaxation minimizes the trace: the identity is feasible, so trace(P) <= d
    assert np.trace(sol.P) <= X.shape[1] + 1e-6


@pytest.mark.parametrize("r", [2, 3])
def test_numax_rank_is_the_subspace_dimension_as_delta_goes_to_zero(r):
    from jl_lightning.baselines.numax import numax

    rng = np.random.default_rng(r)
    basis = np.linalg.qr(rng.normal(size=(8, r)))[0]  # an r-dimensional subspace of R^8
    X = rng.normal(size=(25, r)) @ basis.T
    sol = numax(X, 1e-3, initial=300, add=100)
    assert sol.rank == r
    # at delta -> 0 the map is an isometry on the subspace: P is its orthogonal projector
    np.testing.assert_allclose(sol.P, basis @ basis.T, atol=5e-3)


def test_numax_for_k_returns_an_exactly_measured_k_row_map():
    from jl_lightning.baselines.numax import numax_for_k
    from jl_lightning.metrics.distortion import evaluate

    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 6)) @ np.diag([4, 3, 1, 0.3, 0.2, 0.1])
    out = numax_for_k(X, 3, steps=3, initial=100, add=100)
    assert out["matrix"].shape == (3, 6)
    assert out["epsilon_scaled"] == pytest.approx(evaluate(out["matrix"], X, "pairs").epsilon, rel=1e-9)
    assert out["solves"] == 4 and out["epsilon_scaled"] <= out["epsilon"] + 1e-12


def test_a_shared_cache_solves_each_delta_once_and_offers_every_truncation(monkeypatch):
    from jl_lightning.baselines import numax as module

    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 6)) @ np.diag([4, 3, 1, 0.3, 0.2, 0.1])
    solved = []
    real = module.numax
    monkeypatch.setattr(module, "numax", lambda X, delta, **kw: solved.append(delta) or real(X, delta, **kw))
    cache = {}
    first = module.numax_for_k(X, 2, steps=3, initial=100, add=100, cache=cache)
    solved.clear()
    shared = module.numax_for_k(X, 4, steps=3, initial=100, add=100, cache=cache)
    # the deltas k=2 solved are not solved again; only the new ones are
    assert set(solved) == {t["delta"] for t in shared["tried"]} - {t["delta"] for t in first["tried"]}
    assert len(solved) == len(set(solved))
    # every cached P's truncation was measured at k=4, and the best of them is returned
    assert len(shared["tried"]) == len(cache) and set(cache) == {t["delta"] for t in shared["tried"]}
    assert shared["epsilon_scaled"] == min(t["epsilon_scaled"] for t in shared["tried"])


# ------------------------------------------------------------------ recall@K
def brute_recall(A, X, rows, K):
    def neighbours(Z):
        d = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
        out = []
        for q in rows:
            dq = d[q].copy()
            dq[q] = np.inf
            out.append(set(np.lexsort((np.arange(len(Z)), dq))[:K]))  # distance, then index
        return out

    truth, found = neighbours(X), neighbours(X @ A.T)
    return sum(len(a & b) for a, b in zip(truth, found)) / (len(rows) * K)


@pytest.mark.parametrize("queries", [10_000, 37])
def test_recall_equals_a_brute_force_count(queries):
    from jl_lightning.metrics.neighbors import TILE_ROWS, query_rows

    rng = np.random.default_rng(2)
    X = rng.normal(size=(300, 12))
    X[5] = X[17]  # a tie in both spaces
    A = rng.normal(size=(4, 12))
    rows = query_rows(len(X), queries, 0)
    got = recall_at_k(A, X, K=10, queries=queries, seed=0)
    assert got == pytest.approx(brute_recall(A, X, rows, 10), abs=1e-12)
    assert 0 < got < 1
    assert recall_at_k(np.eye(12), X, K=10, queries=queries) == 1.0
    assert TILE_ROWS >= 1


def test_recall_over_several_tiles(monkeypatch):
    import jl_lightning.metrics.neighbors as neighbors

    monkeypatch.setattr(neighbors, "TILE_ROWS", 7)  # the running top-K across many tiles
    rng = np.random.default_rng(3)
    X = rng.normal(size=(60, 5))
    A = rng.normal(size=(2, 5))
    assert neighbors.recall_at_k(A, X, K=10) == pytest.approx(brute_recall(A, X, np.arange(60), 10), abs=1e-12)


@pytest.mark.parametrize("tile_rows", [7, 64])
def test_neighbours_with_ties_at_the_kth_place_equal_a_lexicographic_sort(monkeypatch, tile_rows):
    import jl_lightning.metrics.neighbors as neighbors

    monkeypatch.setattr(neighbors, "TILE_ROWS", tile_rows)
    # points of a small integer lattice, some repeated: most K-th distances are tied
    rng = np.random.default_rng(4)
    X = rng.integers(0, 3, size=(90, 3)).astype(float)
    A = np.array([[1.0, 1.0, 0.0]])  # integer images: ties after the map too
    K, rows = 10, np.arange(90)

    def brute(Z):
        d = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        return np.stack([np.lexsort((np.arange(len(Z)), d[q]))[:K] for q in rows])

    assert np.array_equal(neighbors.original_neighbors(X, K, queries=1000), brute(X))
    found = neighbors._nearest(X, torch.from_numpy(rows), K, torch.from_numpy(A), torch.device("cpu")).numpy()
    assert np.array_equal(found, brute(X @ A.T))
    assert neighbors.recall_at_k(A, X, K) == pytest.approx(brute_recall(A, X, rows, K), abs=1e-12)


def test_the_secant_budget_stops_column_generation_and_says_by_how_much_delta_is_missed():
    from jl_lightning.baselines.numax import numax

    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 10))  # 780 secants in general position: a small delta needs many
    capped = numax(X, 0.05, initial=30, add=30, max_secants=60)
    assert capped.secants <= 60 + 30 and capped.rounds >= 2
    assert capped.epsilon_all > 0.05 * 1.01  # measured over every secant, not only the active ones
    roomy = numax(X, 0.05, initial=30, add=200, max_secants=780)
    assert roomy.epsilon_all < capped.epsilon_all
