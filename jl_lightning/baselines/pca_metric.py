"""PCA's row space with its best k x k metric: a linear program over pairs, by column generation.

A (k, d) map A whose rows span the orthonormal columns of U (d x k) acts on a pair's unit
difference s only through its metric G = U^T A^T A U: ||A s||^2 = z^T G z with z = U^T s.
For PCA's U the best worst-case distortion is a linear program in the k (k + 1) / 2 entries
of G,

    minimize eps  subject to  -eps <= z_p^T G z_p - 1 <= eps  for every pair p,

whose optimum over any subset of the pairs is a lower bound for every map with this row
space. Column generation: the LP over a working set of pairs (PCA's worst pairs at first),
its G (negative eigenvalues clipped: a map needs G = R^2) certified by an exact pass over
all pairs, that pass's worst pairs added, until the certified epsilon attains the LP's bound
(then it is this row space's best) or ``rounds`` rounds; the best certified map is kept.
The working set keeps the pairs the last LP held tight and stays within the memory budget.

Needs scipy (HiGHS, through ``scipy.optimize.linprog``).
"""

from __future__ import annotations

import time

import numpy as np

from jl_lightning.core.pairs import DEFAULT_MEMORY_BUDGET
from jl_lightning.metrics.distortion import evaluate
from jl_lightning.sparse_rows import SparseRows

# the LP solver's tolerance: a certified epsilon this close to the LP's bound attains it
ATTAINED = 1e-6


def metric_features(points, i: np.ndarray, j: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Row p: the coefficients of G's upper triangle in z_p^T G z_p for the pair (i_p, j_p)'s
    unit difference (off-diagonal coefficients doubled); shape (len(i), k (k + 1) / 2)."""
    if isinstance(points, SparseRows):
        s = points.matrix[i] - points.matrix[j]
        z = np.asarray(s @ U)
        norms = np.sqrt(np.asarray(s.multiply(s).sum(1)).ravel())
    else:
        s = np.asarray(points[i], dtype=np.float64) - np.asarray(points[j], dtype=np.float64)
        z = s @ U
        norms = np.linalg.norm(s, axis=1)
    z = z / norms[:, None]
    rows, cols = np.triu_indices(U.shape[1])
    return z[:, rows] * z[:, cols] * np.where(rows == cols, 1.0, 2.0)


def best_metric(features: np.ndarray, k: int) -> tuple[float, np.ndarray, np.ndarray]:
    """(LP optimum, k x k symmetric G, each row's |features g - 1|) of
    min eps s.t. |features g - 1| <= eps (scipy's HiGHS)."""
    from scipy.optimize import linprog  # noqa: PLC0415  (scipy: an optional extra)

    m = features.shape[1]
    ones = np.ones((len(features), 1))
    cost = np.zeros(m + 1)
    cost[-1] = 1.0
    result = linprog(
        cost,
        A_ub=np.vstack([np.hstack([features, -ones]), np.hstack([-features, -ones])]),
        b_ub=np.concatenate([np.ones(len(features)), -np.ones(len(features))]),
        bounds=[(None, None)] * m + [(0, None)],
        method="highs",
    )
    if result.status != 0:
        raise RuntimeError(f"pca_metric: the LP failed: {result.message}")
    upper = np.zeros((k, k))
    upper[np.triu_indices(k)] = result.x[:m]
    deviations = np.abs(features @ result.x[:m] - 1.0)
    return float(result.x[-1]), upper + np.triu(upper, 1).T, deviations


def metric_map(G: np.ndarray, U: np.ndarray) -> np.ndarray:
    """The (k, d) map R U^T with R the PSD square root of G (negative eigenvalues clipped)."""
    values, vectors = np.linalg.eigh(G)
    root = (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T
    return root @ U.T


def pca_metric(
    points,
    U: np.ndarray,
    *,
    pairs: int = 20000,
    rounds: int = 10,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    log=None,
) -> dict:
    """The best metric on the row space of ``U`` (d x k, orthonormal columns; PCA's for the
    ``pca_metric`` reference), by column generation over the exact pass's worst pairs.

    Parameters
    ----------
    points : array (n, d) or SparseRows
        The training points.
    U : ndarray (d, k)
        Orthonormal columns spanning the row space.
    pairs : int, default 20000
        Worst pairs each exact pass adds to the LP's working set (fewer where the budget
        holds fewer).
    rounds : int, default 10
        LP and exact-pass rounds at most.
    memory_budget : int, default ``DEFAULT_MEMORY_BUDGET``
        Bytes the LP's dense constraint rows may take (2 per pair, k (k + 1) / 2 + 1 values):
        beyond it the working set keeps the pairs the last LP held tightest.
    log : callable, optional
        Called with one line per round.

    Returns
    -------
    dict
        ``matrix`` (k, d): the best certified map; ``epsilon``: its exact epsilon over all
        pairs; ``bound``: the largest LP optimum met, a lower bound for every map with this
        row space; ``attained``: whether a certified map reached the bound (then
        ``epsilon`` is this row space's best); ``rounds``, ``working_pairs``, ``seconds``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(40, 6))
    >>> U = np.linalg.svd(X - X.mean(0))[2][:2].T
    >>> result = pca_metric(X, U, pairs=50)
    >>> result["bound"] <= result["epsilon"] + 1e-9
    True
    """
    began = time.perf_counter()
    k = U.shape[1]
    m = k * (k + 1) // 2
    # the LP's dense constraint rows within the budget: 2 rows of m + 1 float64 values a pair
    cap = max(1, int(memory_budget // (2 * 8 * (m + 1))))
    pairs = min(int(pairs), cap)
    report = evaluate(U.T, points, "pairs", worst=pairs, quantiles=False, mean_abs=False)
    i, j = (np.asarray(a) for a in report.worst[:2])
    features = metric_features(points, i, j, U)
    best = {"matrix": None, "epsilon": np.inf}
    bound, done = 0.0, 0
    for done in range(1, rounds + 1):
        bound_now, G, deviations = best_metric(features, k)
        bound = max(bound, bound_now)
        matrix = metric_map(G, U)
        report = evaluate(matrix, points, "pairs", worst=pairs, quantiles=False, mean_abs=False)
        if report.epsilon < best["epsilon"]:
            best = {"matrix": matrix, "epsilon": float(report.epsilon)}
        if log is not None:
            log(
                f"pca_metric round {done}: LP over {len(i):,} pairs >= {bound_now:.4f}, "
                f"its metric over all pairs {report.epsilon:.4f}"
            )
        if best["epsilon"] <= bound * (1 + ATTAINED) + ATTAINED:
            break
        seen = set(zip(i.tolist(), j.tolist()))
        new = [(a, b) for a, b in zip(report.worst[0].tolist(), report.worst[1].tolist()) if (a, b) not in seen]
        if not new:  # worse only where its negative eigenvalues were clipped
            break
        keep = np.argsort(-deviations, kind="stable")[: max(0, cap - len(new))]
        new_i, new_j = (np.array(a, dtype=np.int64) for a in zip(*new))
        i, j = np.concatenate([i[keep], new_i]), np.concatenate([j[keep], new_j])
        features = np.vstack([features[keep], metric_features(points, new_i, new_j, U)])
    return {
        **best,
        "bound": bound,
        "attained": bool(best["epsilon"] <= bound * (1 + ATTAINED) + ATTAINED),
        "rounds": done,
        "working_pairs": len(i),
        "seconds": time.perf_counter() - began,
    }
