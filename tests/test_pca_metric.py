"""pca_metric: PCA's row space with its best metric, by column generation, against the LP
over every pair (scipy's HiGHS on all n (n - 1) / 2 pairs at once) and a brute-force count."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy")

from jl_lightning.baselines.pca_metric import best_metric, metric_features, pca_metric  # noqa: E402
from jl_lightning.sparse_rows import SparseRows  # noqa: E402


def brute_epsilon(A, X):
    i, j = np.triu_indices(len(X), 1)
    s = X[i] - X[j]
    return np.abs(((s @ A.T) ** 2).sum(1) / (s**2).sum(1) - 1).max()


def points(n=60, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * np.linspace(3, 1, d)


def test_column_generation_reaches_the_all_pairs_optimum_from_a_few_pairs():
    X = points()
    U = np.linalg.svd(X - X.mean(0))[2][:3].T
    i, j = np.triu_indices(len(X), 1)
    optimum, _, _ = best_metric(metric_features(X, i, j, U), 3)
    result = pca_metric(X, U, pairs=30, rounds=50)
    assert result["attained"] and result["working_pairs"] < len(i) / 4  # a fraction of the 1770 pairs
    assert result["bound"] == pytest.approx(optimum, rel=1e-6)
    assert result["epsilon"] == pytest.approx(optimum, rel=1e-6)
    assert brute_epsilon(result["matrix"], X) == pytest.approx(result["epsilon"], rel=1e-9)
    # PCA at its best single scale is one metric (G = c I) of the same row space: never better
    e = ((X[i] - X[j]) @ U) ** 2
    ratio = e.sum(1) / ((X[i] - X[j]) ** 2).sum(1)
    assert 2 / (ratio.min() + ratio.max()) * ratio.max() - 1 >= result["epsilon"] - 1e-9


def test_a_round_limit_keeps_the_best_certified_map_and_a_lower_bound():
    X = points(n=80, d=10, seed=1)
    U = np.linalg.svd(X - X.mean(0))[2][:4].T
    i, j = np.triu_indices(len(X), 1)
    optimum, _, _ = best_metric(metric_features(X, i, j, U), 4)
    result = pca_metric(X, U, pairs=5, rounds=1)
    assert result["rounds"] == 1 and not result["attained"]
    assert result["bound"] <= optimum + 1e-9 <= result["epsilon"] + 2e-9
    assert brute_epsilon(result["matrix"], X) == pytest.approx(result["epsilon"], rel=1e-9)


def test_sparse_rows_give_the_dense_result():
    sparse = pytest.importorskip("scipy.sparse")
    X = points(n=50, d=12, seed=2)
    X[np.abs(X) < 1.0] = 0.0
    X = X[np.abs(X).sum(1) > 0]
    U = np.linalg.svd(X - X.mean(0))[2][:3].T
    dense = pca_metric(X, U, pairs=20, rounds=30)
    rows = pca_metric(SparseRows(sparse.csr_matrix(X)), U, pairs=20, rounds=30)
    assert rows["epsilon"] == pytest.approx(dense["epsilon"], rel=1e-9)
    assert np.allclose(rows["matrix"], dense["matrix"], atol=1e-9)


def test_pca_metric_is_a_registered_reference_of_pairs_mode():
    from omegaconf import OmegaConf

    from jl_lightning.apps.compare import method_rows
    from jl_lightning.baselines.registry import check_methods, pca_matrix
    from jl_lightning.errors import JLInputError

    X = points(n=40, d=6, seed=3)
    direct = pca_metric(X, pca_matrix(X, 2).T, pairs=20000, rounds=10)
    rows, maps, _ = method_rows(X, 2, "pairs", ["pca_metric"], OmegaConf.create({"draws": 1, "seed": 0}))
    assert [r["method"] for r in rows] == ["pca_metric (best scale)"]
    assert rows[0]["epsilon_best"] == pytest.approx(direct["epsilon"], rel=1e-9)
    assert brute_epsilon(maps["pca_metric (best scale)"], X) == pytest.approx(direct["epsilon"], rel=1e-9)
    with pytest.raises(JLInputError, match="pca_metric preserves pairwise distances"):
        check_methods(["pca_metric"], "compare.methods", "norms")
