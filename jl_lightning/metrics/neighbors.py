"""Neighbours preserved: recall@K of the exact K nearest neighbours after embedding.

For a query x_q, N_K(q) is the set of its K nearest other points in the original space
and N'_K(q) the same under the map A (distances ||A x_q - A x_j||). Then

    recall@K = mean over queries of |N_K(q) ∩ N'_K(q)| / K.

Both neighbour sets are exact: every query against every point, in float64, tile by tile
with a running top-K (memory: one tile of distances), never an approximate index. Ties
in distance are broken by the lower row index, in both spaces. The queries are a seeded
sample of up to ``queries`` rows (all rows when there are fewer).
"""

from __future__ import annotations

import numpy as np
import torch

from jl_lightning.metrics.tiles import to_tensor

TILE_ROWS = 8192


def _nearest(Q: torch.Tensor, q_index: torch.Tensor, X: torch.Tensor, K: int) -> torch.Tensor:
    """Row indices of the K nearest rows of X to each row of Q, the query's own row left out
    (ties: the lower index first); shape (len(Q), K)."""
    best_d = torch.full((len(Q), 0), float("inf"), dtype=Q.dtype)
    best_i = torch.empty((len(Q), 0), dtype=torch.long)
    nq = Q.pow(2).sum(1)
    for start in range(0, len(X), TILE_ROWS):
        T = X[start:start + TILE_ROWS]
        dist = (nq[:, None] + T.pow(2).sum(1)[None, :] - 2 * Q @ T.T).clamp_(min=0)
        index = torch.arange(start, start + len(T)).expand(len(Q), -1)
        dist = dist.masked_fill(index == q_index[:, None], float("inf"))
        cand_d = torch.cat([best_d, dist], 1)
        cand_i = torch.cat([best_i, index], 1)
        # lexicographic (distance, index): sort by index, then a stable sort by distance
        by_index = torch.argsort(cand_i, dim=1)
        cand_d, cand_i = cand_d.gather(1, by_index), cand_i.gather(1, by_index)
        order = torch.argsort(cand_d, dim=1, stable=True)[:, :K]
        best_d, best_i = cand_d.gather(1, order), cand_i.gather(1, order)
    return best_i


def query_rows(n: int, queries: int, seed: int) -> np.ndarray:
    """The seeded sample of query rows (sorted), all rows when n <= queries."""
    if n <= queries:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=queries, replace=False))


@torch.no_grad()
def recall_at_k(linear_map, points, K: int = 10, queries: int = 1000, seed: int = 0,
                reference_neighbors: np.ndarray | None = None) -> float:
    """recall@K of ``linear_map`` ((k, d) matrix) on ``points`` (n, d), over a seeded sample
    of up to ``queries`` query rows. ``reference_neighbors``: the original space's
    neighbours from :func:`original_neighbors` (same K, queries, seed), to share them
    among several maps."""
    X = to_tensor(points, torch.float64)
    n = len(X)
    if n <= K:
        raise ValueError(f"recall@{K} needs more than {K} points, got {n}")
    rows = torch.from_numpy(query_rows(n, queries, seed))
    truth = reference_neighbors if reference_neighbors is not None else original_neighbors(points, K, queries, seed)
    A = to_tensor(linear_map, torch.float64)
    Y = X @ A.T
    found = _nearest(Y[rows], rows, Y, K).numpy()
    hits = sum(len(np.intersect1d(a, b, assume_unique=True)) for a, b in zip(truth, found))
    return hits / (len(rows) * K)


@torch.no_grad()
def original_neighbors(points, K: int = 10, queries: int = 1000, seed: int = 0) -> np.ndarray:
    """The exact K nearest neighbours of the sampled queries in the original space."""
    X = to_tensor(points, torch.float64)
    rows = torch.from_numpy(query_rows(len(X), queries, seed))
    return _nearest(X[rows], rows, X, K).numpy()
