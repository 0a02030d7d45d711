"""Neighbours preserved: recall@K of the exact K nearest neighbours after embedding.

For a query x_q, N_K(q) is the set of its K nearest other points in the original space
and N'_K(q) the same under the map A (distances ||A x_q - A x_j||). Then

    recall@K = mean over queries of |N_K(q) ∩ N'_K(q)| / K.

Both neighbour sets are exact: every query against every point, in float64, tile by tile
with a running top-K (memory: one tile of points and one tile of distances, never an
(n, d) float64 copy), never an approximate index. Ties in distance are broken by the lower
row index, in both spaces. The queries are a seeded sample of up to ``queries`` rows (all
rows when there are fewer). ``device`` picks where the tiles are computed (a CUDA device
for points that live on the host is fine: each tile is copied over once).
"""

from __future__ import annotations

import numpy as np
import torch

from jl_lightning.core.pairs import DEFAULT_MEMORY_BUDGET
from jl_lightning.core.sampling import rows_times
from jl_lightning.metrics.tiles import to_tensor
from jl_lightning.sparse_rows import SparseRows, row_sq_norms

TILE_ROWS = 8192


def tile_rows(points) -> int:
    """Rows of points per tile: ``TILE_ROWS``, fewer where a dense tile of wide rows would
    exceed the memory budget (sparse rows stay sparse: their tiles are never dense)."""
    if isinstance(points, SparseRows):
        return TILE_ROWS
    return max(1, min(TILE_ROWS, DEFAULT_MEMORY_BUDGET // (2 * 8 * max(1, points.shape[1]))))


def _block(points, index, A, device):
    """(vectors, sparse rows): rows of ``points`` at ``index`` as float64 vectors on ``device``
    (their images under A if given), or, for sparse rows compared in the original space, the
    scipy rows themselves (vectors None)."""
    chosen = points[index]
    if isinstance(chosen, SparseRows):
        rows = chosen.matrix.astype(np.float64)
        if A is None:
            return None, rows
        return rows_times(rows, A), None
    vectors = to_tensor(chosen, torch.float64, device)
    return (vectors if A is None else vectors @ A.T), None


def _nearest(points, rows: torch.Tensor, K: int, A: torch.Tensor | None, device, tick=None) -> torch.Tensor:
    """Row indices of the K nearest rows of ``points`` to each row in ``rows`` (itself left
    out; ties: the lower index first), distances taken after the map ``A`` ((k, d) float64
    on ``device``) or in the original space (A None); shape (len(rows), K), on the host.

    Per tile, ``topk`` picks each query's K smallest; where a row holds more values at or
    below its K-th smallest (a tie at the boundary), every row keeps as many smallest as the
    widest such row holds, so the (distance, index) order is exact either way. ``tick()``, if
    given, is called after each tile (a heartbeat's count)."""
    n = len(points)
    Q, Qs = _block(points, rows.numpy(), A, device)
    q_index = rows.to(device)
    queries = len(rows)
    best_d = torch.full((queries, 0), float("inf"), dtype=torch.float64, device=device)
    best_i = torch.empty((queries, 0), dtype=torch.long, device=device)
    nq = Q.pow(2).sum(1) if Q is not None else _sq(Qs, device)
    step = tile_rows(points)
    for start in range(0, n, step):
        T, Ts = _block(points, slice(start, start + step), A, device)
        if T is not None:
            nt, gram, width = T.pow(2).sum(1), Q @ T.T, len(T)
        else:  # sparse rows: one sparse product, never a dense row block
            nt, width = _sq(Ts, device), Ts.shape[0]
            gram = torch.as_tensor((Qs @ Ts.T).toarray(), dtype=torch.float64, device=device)
        dist = (nq[:, None] + nt[None, :] - 2 * gram).clamp_(min=0)
        index = torch.arange(start, start + width, device=device).expand(queries, -1)
        dist = dist.masked_fill(index == q_index[:, None], float("inf"))
        m = min(K, width)
        top_d, top_pos = dist.topk(m, dim=1, largest=False)
        at_or_below = int((dist <= top_d[:, -1:]).sum(1).max())
        if at_or_below > m:
            # a tie at the boundary (duplicate rows make them common): every value at or below
            # a row's K-th smallest is a candidate, and the widest row's count of them bounds
            # how many smallest each row keeps; a value above it has K smaller ones in the tile
            top_d, top_pos = dist.topk(at_or_below, dim=1, largest=False)
        cand_d, cand_i = top_d, index.gather(1, top_pos)
        cand_d = torch.cat([best_d, cand_d], 1)
        cand_i = torch.cat([best_i, cand_i], 1)
        # lexicographic (distance, index): sort by index, then a stable sort by distance
        by_index = torch.argsort(cand_i, dim=1)
        cand_d, cand_i = cand_d.gather(1, by_index), cand_i.gather(1, by_index)
        order = torch.argsort(cand_d, dim=1, stable=True)[:, :K]
        best_d, best_i = cand_d.gather(1, order), cand_i.gather(1, order)
        if tick is not None:
            tick()
    return best_i.cpu()


def _sq(rows, device) -> torch.Tensor:
    """||x||^2 of each scipy.sparse row (float64)."""
    return torch.as_tensor(row_sq_norms(rows), device=device)


def query_rows(n: int, queries: int, seed: int) -> np.ndarray:
    """The seeded sample of query rows (sorted), all rows when n <= queries."""
    if n <= queries:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=queries, replace=False))


def _device(points, device) -> torch.device:
    if device is not None:
        return torch.device(device)
    return points.device if isinstance(points, torch.Tensor) else torch.device("cpu")


@torch.no_grad()
def recall_at_k(
    linear_map,
    points,
    K: int = 10,
    queries: int = 1000,
    seed: int = 0,
    reference_neighbors: np.ndarray | None = None,
    device=None,
    tick=None,
) -> float:
    """recall@K of ``linear_map`` ((k, d) matrix) on ``points`` (n, d), over a seeded sample
    of up to ``queries`` query rows. ``reference_neighbors``: the original space's
    neighbours from :func:`original_neighbors` (same K, queries, seed), to share them
    among several maps. ``device``: where to compute (default: where ``points`` are).
    ``tick()``: called after each tile of :data:`TILE_ROWS` points."""
    n = len(points)
    if n <= K:
        raise ValueError(f"recall@{K} needs more than {K} points, got {n}")
    device = _device(points, device)
    rows = torch.from_numpy(query_rows(n, queries, seed))
    truth = (
        reference_neighbors
        if reference_neighbors is not None
        else original_neighbors(points, K, queries, seed, device=device)
    )
    A = to_tensor(linear_map, torch.float64, device)
    found = _nearest(points, rows, K, A, device, tick).numpy()
    hits = sum(len(np.intersect1d(a, b, assume_unique=True)) for a, b in zip(truth, found))
    return hits / (len(rows) * K)


@torch.no_grad()
def original_neighbors(points, K: int = 10, queries: int = 1000, seed: int = 0, device=None, tick=None) -> np.ndarray:
    """The exact K nearest neighbours of the sampled queries in the original space
    (``tick()`` after each tile, as in :func:`recall_at_k`)."""
    rows = torch.from_numpy(query_rows(len(points), queries, seed))
    return _nearest(points, rows, K, None, _device(points, device), tick).numpy()
