"""The two tile iterators every exact figure is computed with: rows of points, and tiles of pairs.

Memory stays bounded whatever n is: a point tile holds ``rows`` points and their images; a
pair tile holds two row blocks, their images under each map, and a few (rows x rows)
temporaries. Nothing of size n^2 is ever stored.

Pair tiles never form difference vectors. The original squared distances of a tile come
from norms and one GEMM, ||x_i - x_j||^2 = ||x_i||^2 + ||x_j||^2 - 2 <x_i, x_j>, and the
same identity on Y = X A^T gives the embedded ones; pairs at zero distance (duplicates,
judged by ``core.pairs.far_apart``) are masked out and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from jl_lightning.core.pairs import far_apart, pair_tiles_of, sq_distances
from jl_lightning.core.sampling import rows_times
from jl_lightning.core.sharding import SINGLE, Shard
from jl_lightning.sparse_rows import SparseRows, dense_rows, row_sq_norms

# square pair tiles of at most this many rows: 512^2 float64 = 2 MB, so a handful of
# temporaries per map stay in cache
MAX_PAIR_TILE_ROWS = 512

LinearMap = Callable[[torch.Tensor], torch.Tensor]


def is_operator(linear_map) -> bool:
    """An object with ``apply(X)`` and ``d`` (such as the SRHT), rather than a matrix."""
    return hasattr(linear_map, "apply") and not isinstance(linear_map, (np.ndarray, torch.Tensor))


def to_tensor(array, dtype: torch.dtype, device=None) -> torch.Tensor:
    """A tile of rows as a dense tensor of ``dtype`` on ``device`` (sparse rows densified here,
    a tile at a time)."""
    if isinstance(array, torch.Tensor):
        return array.detach().to(dtype=dtype, device=device)
    return torch.as_tensor(dense_rows(array), dtype=dtype, device=device)


def as_linear_map(linear_map, dtype: torch.dtype) -> tuple[LinearMap, int, torch.device]:
    """(X -> X A^T, d, device) for a (k, d) matrix or an operator with ``apply(X)`` and ``d``.

    An operator is applied as it is, never materialized. X is a dense tensor of ``dtype``, or a
    scipy.sparse chunk of rows: a matrix multiplies it as it is (a sparse product), an
    operator gets it densified.
    """
    if is_operator(linear_map):

        def apply_operator(X):
            X = X if isinstance(X, torch.Tensor) else to_tensor(X, dtype)
            return linear_map.apply(X).to(dtype)

        return apply_operator, int(linear_map.d), torch.device("cpu")
    device = linear_map.device if isinstance(linear_map, torch.Tensor) else None
    A = to_tensor(linear_map, dtype, device)
    if A.ndim != 2:
        raise ValueError(f"the linear map must be a 2-D (k, d) matrix, got shape {tuple(A.shape)}")
    cache: dict = {}

    def apply_matrix(X):
        return X @ A.T if isinstance(X, torch.Tensor) else rows_times(X, A, cache)

    return apply_matrix, A.shape[1], A.device


def check_points(points, d: int) -> int:
    """n, after checking that ``points`` is a non-empty (n, d) array."""
    shape = getattr(points, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError("points must be a 2-D (n, d) array")
    if shape[1] != d:
        raise ValueError(f"points have dimension {shape[1]}, the linear map expects d={d}")
    if shape[0] == 0:
        raise ValueError("points is empty")
    return int(shape[0])


def point_tile_rows(d: int, k: int, itemsize: int, memory_budget: int) -> int:
    """Rows per point tile so that a tile of points and its image fit the budget."""
    return max(1, int(memory_budget // ((d + k + 2) * itemsize)))


def pair_tile_rows(d: int, k: int, itemsize: int, memory_budget: int) -> int:
    """Rows per square pair tile: two row blocks and ~6 (b x b) temporaries fit the budget,
    and b <= MAX_PAIR_TILE_ROWS."""
    c = memory_budget / itemsize  # 6 b^2 + 2 b (d + k) <= c
    b = (-2 * (d + k) + math.sqrt(4 * (d + k) ** 2 + 24 * c)) / 12
    return max(1, min(int(b), MAX_PAIR_TILE_ROWS))


def point_tiles(
    points, rows: int, dtype: torch.dtype, device, shard: Shard = SINGLE
) -> Iterator[tuple[int, torch.Tensor]]:
    """(start, X) for consecutive tiles of ``rows`` points, as tensors of ``dtype``; with
    ``shard``, only the tiles rank, rank + world, ... of that sequence."""
    for t, start in enumerate(range(0, len(points), rows)):
        if t % shard.world == shard.rank:
            yield start, to_tensor(points[start : start + rows], dtype, device)


@dataclass
class PairTile:
    """One tile of pairs: rows i0.. of the first set against rows j0.. of the second.

    ``inv`` is 1 / ||x_i - x_j||^2 on valid pairs and 0 elsewhere; ``valid`` masks the pairs
    that count (i < j on a diagonal tile, not at zero distance); ``zeros`` counts the pairs
    left out as duplicates; ``images[m]`` is (Y_i, Y_j) under map m.
    """

    i0: int
    j0: int
    inv: torch.Tensor
    valid: torch.Tensor
    count: int
    zeros: int
    images: list[tuple[torch.Tensor, torch.Tensor]]

    @property
    def all_valid(self) -> bool:
        return self.count == self.valid.numel()

    def ratios(self, m: int) -> torch.Tensor:
        """||A_m (x_i - x_j)||^2 / ||x_i - x_j||^2 on the tile, 1 where a pair does not count."""
        Yi, Yj = self.images[m]
        dy = sq_distances(Yi, Yj)
        return torch.addcmul((~self.valid).to(dy.dtype), dy, self.inv)


def pair_tiles(
    points, applies: list[LinearMap], rows: int, dtype: torch.dtype, device, other=None, shard: Shard = SINGLE
) -> Iterator[PairTile]:
    """Every pair i < j of ``points`` (the upper triangle, tile by tile), or with ``other``
    every pair (row of ``points``, row of ``other``). Each row block is mapped once per map.
    With ``shard``, only the tiles rank, rank + world, ... of that sequence."""
    cross = other is not None
    second = other if cross else points
    if isinstance(points, SparseRows) or isinstance(second, SparseRows):
        yield from _sparse_pair_tiles(points, applies, rows, dtype, device, other, shard)
        return
    for i0, mine in pair_tiles_of(len(points), rows, len(other) if cross else None, shard.rank, shard.world):
        Xi = to_tensor(points[i0 : i0 + rows], dtype, device)
        Yis = [apply(Xi) for apply in applies]
        nxi = Xi.pow(2).sum(1)
        for j0 in mine:
            diagonal = j0 == i0 and not cross
            Xj = Xi if diagonal else to_tensor(second[j0 : j0 + rows], dtype, device)
            Yjs = Yis if diagonal else [apply(Xj) for apply in applies]
            nxj = nxi if diagonal else Xj.pow(2).sum(1)
            scale = nxi[:, None] + nxj[None, :]
            dx = sq_distances(Xi, Xj, scale)
            far = far_apart(dx, scale)
            valid = torch.triu(far, diagonal=1) if diagonal else far
            count = int(valid.sum())
            candidates = (len(Xi) * (len(Xi) - 1)) // 2 if diagonal else len(Xi) * len(Xj)
            inv = torch.where(valid, 1.0 / dx, torch.zeros_like(dx))
            yield PairTile(i0, j0, inv, valid, count, candidates - count, list(zip(Yis, Yjs)))


def _sparse_rows(source, start: int, rows: int, dtype: torch.dtype):
    """Rows start.. of ``source`` as a scipy.sparse chunk of ``dtype`` (dense sources too)."""
    # lazy: scipy is needed only where sparse data is
    import scipy.sparse as sp  # noqa: PLC0415

    block = source[start : start + rows]
    matrix = block.matrix if isinstance(block, SparseRows) else sp.csr_matrix(dense_rows(block))
    return matrix.astype(np.float64 if dtype == torch.float64 else np.float32)


def _sparse_pair_tiles(points, applies, rows, dtype, device, other, shard) -> Iterator[PairTile]:
    """:func:`pair_tiles` for sparse rows: each tile's Gram matrix is one sparse product (nonzero
    overlaps only, never a dense row block), each row block's images one sparse product per map."""
    cross = other is not None
    second = other if cross else points
    for i0, mine in pair_tiles_of(len(points), rows, len(other) if cross else None, shard.rank, shard.world):
        Si = _sparse_rows(points, i0, rows, dtype)
        Yis = [apply(Si) for apply in applies]
        nxi = torch.as_tensor(row_sq_norms(Si), dtype=dtype, device=device)
        for j0 in mine:
            diagonal = j0 == i0 and not cross
            Sj = Si if diagonal else _sparse_rows(second, j0, rows, dtype)
            Yjs = Yis if diagonal else [apply(Sj) for apply in applies]
            nxj = nxi if diagonal else torch.as_tensor(row_sq_norms(Sj), dtype=dtype, device=device)
            gram = torch.as_tensor((Si @ Sj.T).toarray(), dtype=dtype, device=device)
            scale = nxi[:, None] + nxj[None, :]
            dx = torch.add(scale, gram, alpha=-2.0)
            far = far_apart(dx, scale)
            valid = torch.triu(far, diagonal=1) if diagonal else far
            count = int(valid.sum())
            candidates = (Si.shape[0] * (Si.shape[0] - 1)) // 2 if diagonal else Si.shape[0] * Sj.shape[0]
            inv = torch.where(valid, 1.0 / dx, torch.zeros_like(dx))
            yield PairTile(i0, j0, inv, valid, count, candidates - count, list(zip(Yis, Yjs)))
