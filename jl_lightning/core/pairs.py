"""Pair geometry: what the pairs-mode losses need about the original points.

Pairs mode measures, for each pair i < j, | ||A (x_i - x_j)||^2 / ||x_i - x_j||^2 - 1 |.
Difference vectors are never formed for all pairs: with Y = A X^T,
||y_i - y_j||^2 = ||y_i||^2 + ||y_j||^2 - 2 <y_i, y_j>, and the same identity on X gives
the original squared distances.

* :func:`center` is the one place points are centered (the data option ``data.center``,
  the pairs losses and the geometry table all call it): distances do not change, and
  squared distances taken from norms lose less to cancellation.
* Pairs at zero distance (duplicate points) are judged by :data:`ZERO_DISTANCE_RTOL` and
  contribute nothing anywhere, in the losses and in every reported figure.
* :func:`far_apart` is the one definition of a duplicate pair; :func:`random_pairs` draws
  distinct pairs; :func:`gamma32` is the float32 round-off bound the screened passes use.
* :func:`pair_tiles_of` is the one order of the pair tiles and the one rule that gives each
  tile to a rank: every exact pass (``metrics/tiles.py``, ``metrics/pair_screen.py``) walks it,
  and a distributed run's merge of the ranks' reports relies on both walking it alike.
* :class:`PairGeometry` tabulates 1 / ||x_i - x_j||^2 for the exact strategy (n x n).
* :class:`ActivePairs` is the active strategy's pair set: hard pairs set from an exact pass,
  plus fresh random pairs drawn by index every step.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from jl_lightning.sparse_rows import SparseRows, dense_rows, row_sq_norms

# ||x_i - x_j||^2 <= rtol (||x_i||^2 + ||x_j||^2) counts as a duplicate pair (:func:`far_apart`)
ZERO_DISTANCE_RTOL = 1e-12
# one tile of (samples x rows x columns) temporaries in the per-sample scan: cache-sized
TILE_BYTES = 4 * 2**20


def pair_tiles_of(n: int, rows: int, n_other: int | None = None, rank: int = 0, world: int = 1):
    """(i0, [j0, ...]): the row block starting at i0 and the column blocks paired with it that
    belong to ``rank`` of ``world``, for blocks of ``rows`` rows. The tiles are the upper
    triangle (j0 >= i0) of the pairs of n points, or with ``n_other`` every (block of the n
    points, block of the n_other); tile u in this order belongs to rank u % world. Row blocks
    with no tile of this rank are skipped."""
    starts = range(0, n, rows)
    second = range(0, n_other, rows) if n_other is not None else None
    t = -1
    for a, i0 in enumerate(starts):
        columns = second if second is not None else starts[a:]
        mine = [j0 for u, j0 in enumerate(columns, start=t + 1) if u % world == rank]
        t += len(columns)
        if mine:
            yield i0, mine


def pair_tile_count(n: int, rows: int, n_other: int | None = None) -> int:
    """How many tiles :func:`pair_tiles_of` walks over all ranks."""
    blocks = len(range(0, n, rows))
    return blocks * len(range(0, n_other, rows)) if n_other is not None else blocks * (blocks + 1) // 2


# bytes of temporaries per tile or chunk of an exact pass (conf/callbacks/distortion_tracker.yaml
# states the tracker's; every other pass and table takes this one)
DEFAULT_MEMORY_BUDGET = 256 * 2**20
# what a run may hold at its peak besides the budget's temporaries (docs/scale.md, "Memory"):
# dense rows are kept as a float64 validated copy, a float32 training copy and the screen's
# float32 rows, and PCA's reference centers a float64 copy and factors it: 32 bytes per value;
# sparse rows as float64 and float32 CSR with their indices: 32 bytes per non-zero. A few
# phases' temporaries coexist (a tile, its float64 recheck, the candidates): 4 budgets. The
# rest is the interpreter with torch, Lightning, Hydra and scikit-learn loaded.
BYTES_PER_VALUE = 32
BUDGETS_AT_ONCE = 4
FIXED_OVERHEAD = 2**30


def peak_memory_bound(n: int, d: int, nnz: int | None = None, budget: int = DEFAULT_MEMORY_BUDGET) -> int:
    """The peak resident memory (bytes) the project states for a run on ``n`` points of
    dimension ``d`` (``nnz`` non-zeros for sparse rows): the data's copies, a few budgets of
    temporaries and a fixed overhead, whatever k.

    >>> round(peak_memory_bound(10_000, 4096) / 2**30, 2)
    3.22
    """
    values = n * d if nnz is None else nnz
    return BYTES_PER_VALUE * values + BUDGETS_AT_ONCE * budget + FIXED_OVERHEAD


# pair_sq_distances reads the pairs off Gram blocks from C >= n_left n_right / this on
GRAM_PAIRS_RATIO = 64
# the unit round-off of float32: the screened passes bound their float32 error with it
UNIT_ROUNDOFF_32 = 2.0**-24


def gamma32(m: int) -> float:
    """Higham's gamma_m = m u / (1 - m u) for float32's unit round-off u: the relative error
    bound of an m-term float32 dot product, on which every screened pass's recheck rests."""
    return m * UNIT_ROUNDOFF_32 / (1 - m * UNIT_ROUNDOFF_32)


def random_pairs(n: int, count: int, integers):
    """``count`` random pairs (i, j) of n points with i != j, i uniform and j uniform over the
    other n - 1 points; ``integers(low, high, size)`` is the caller's generator (numpy's
    ``Generator.integers`` or a torch ``randint`` wrapper), drawn i first, then the offsets."""
    i = integers(0, n, count)
    return i, (i + integers(1, n, count)) % n


def sq_distances(A: torch.Tensor, B: torch.Tensor, norm_sums: torch.Tensor | None = None) -> torch.Tensor:
    """||a_i - b_j||^2 for every row a_i of A and b_j of B, from norms and one GEMM
    (||a_i||^2 + ||b_j||^2 - 2 <a_i, b_j>), without forming a difference vector; ``norm_sums``:
    ||a_i||^2 + ||b_j||^2 when the caller has it (the duplicate test judges against it)."""
    if norm_sums is None:
        norm_sums = A.pow(2).sum(1)[:, None] + B.pow(2).sum(1)[None, :]
    return torch.addmm(norm_sums, A, B.T, alpha=-2.0)


def _rows(source, index, dtype: torch.dtype, device) -> torch.Tensor:
    """Rows of ``source`` (a torch tensor on any device, a numpy array, memory-mapped or not,
    or sparse rows, densified here) at ``index`` (a slice or an index vector), as ``dtype`` on ``device``."""
    if isinstance(source, torch.Tensor):
        if isinstance(index, torch.Tensor):
            index = index.to(source.device)
        return source[index].detach().to(dtype=dtype, device=device)
    if isinstance(index, torch.Tensor):
        index = index.cpu().numpy()
    return torch.as_tensor(dense_rows(source[index]), dtype=dtype, device=device)


def chunk_rows(width: int, itemsize: int, memory_budget: int, buffers: int = 3) -> int:
    """Rows per chunk so that ``buffers`` arrays of ``width`` columns stay within the budget."""
    return max(1, int(memory_budget // (buffers * itemsize * max(width, 1))))


@torch.no_grad()
def pair_sq_distances(
    left, i, j, right=None, *, memory_budget: int = DEFAULT_MEMORY_BUDGET, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """||l_i - r_j||^2 of the pairs (i[p], j[p]): rows of ``left`` and of ``right`` (default:
    ``left``), torch tensors or numpy arrays; a CPU tensor of ``dtype`` in the pairs' order.

    Memory stays within ``memory_budget`` at any d: either the pairs' rows are gathered in
    chunks sized by it (2 C d reads for C pairs), or, when the pairs are many for the number
    of rows (C >= n_left n_right / ``GRAM_PAIRS_RATIO``), the rows are taken block by block and
    each pair is read off the block's Gram matrix (n_left n_right d operations in GEMMs,
    contiguous reads), where gathering two wide rows per pair would read far more."""
    right_source = left if right is None else right
    device = left.device if isinstance(left, torch.Tensor) else torch.device("cpu")
    i = torch.as_tensor(i, dtype=torch.long).cpu()
    j = torch.as_tensor(j, dtype=torch.long).cpu()
    out = torch.empty(len(i), dtype=dtype)
    if not len(i):
        return out
    n_left, d = left.shape
    n_right = right_source.shape[0]
    if isinstance(left, SparseRows) or isinstance(right_source, SparseRows):
        return _sparse_pair_sq_distances(left, right_source, i, j, out)
    itemsize = torch.finfo(dtype).bits // 8
    if len(i) * GRAM_PAIRS_RATIO < n_left * n_right:
        chunk = chunk_rows(d, itemsize, memory_budget)
        for s in range(0, len(i), chunk):
            a = _rows(left, i[s : s + chunk], dtype, device)
            a -= _rows(right_source, j[s : s + chunk], dtype, device)
            out[s : s + chunk] = a.pow_(2).sum(1).cpu()
        return out
    # blocks of b rows on each side: two b x d row blocks and the b x b Gram within the budget
    b = max(1, min(n_left, n_right, int((-2 * d + math.sqrt(4 * d * d + 4 * memory_budget / itemsize)) / 2)))
    blocks_right = -(-n_right // b)
    key = (i // b) * blocks_right + j // b
    order = torch.argsort(key, stable=True)
    keys, counts = torch.unique_consecutive(key[order], return_counts=True)
    start = 0
    for block, count in zip(keys.tolist(), counts.tolist()):
        members = order[start : start + count]
        start += count
        a0, b0 = (block // blocks_right) * b, (block % blocks_right) * b
        rows_a = _rows(left, slice(a0, a0 + b), dtype, device)
        rows_b = rows_a if right is None and a0 == b0 else _rows(right_source, slice(b0, b0 + b), dtype, device)
        gram = sq_distances(rows_a, rows_b)
        out[members] = gram[(i[members] - a0).to(device), (j[members] - b0).to(device)].cpu()
    return out


SPARSE_PAIR_CHUNK = 2**16  # pairs per sparse difference of rows


def _sparse_pair_sq_distances(left, right, i: torch.Tensor, j: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """:func:`pair_sq_distances` of sparse rows: the pairs' rows subtracted as sparse matrices
    (the union of their nonzeros, never d columns), squared and summed in float64."""
    left = left if isinstance(left, SparseRows) else SparseRows(np.asarray(left))
    right = right if isinstance(right, SparseRows) else SparseRows(np.asarray(right))
    for s in range(0, len(i), SPARSE_PAIR_CHUNK):
        rows_i = left.matrix[i[s : s + SPARSE_PAIR_CHUNK].numpy()].astype(np.float64)
        difference = rows_i - right.matrix[j[s : s + SPARSE_PAIR_CHUNK].numpy()].astype(np.float64)
        out[s : s + SPARSE_PAIR_CHUNK] = torch.from_numpy(row_sq_norms(difference))
    return out


def far_apart(sq_distances, sq_norm_sums):
    """The one definition of a duplicate pair, elementwise: True where a pair counts, i.e.
    ||x_i - x_j||^2 > ZERO_DISTANCE_RTOL (||x_i||^2 + ||x_j||^2). Squared distances taken from
    norms (||x_i||^2 + ||x_j||^2 - 2 <x_i, x_j>) are not exactly 0 for identical points, so a
    duplicate is judged relative to the points' size; every loss, exact pass, NuMax and
    summary.json's duplicate count use this rule."""
    return sq_distances > ZERO_DISTANCE_RTOL * sq_norm_sums


def center(points):
    """``points`` minus their mean point (numpy or torch, same type and dtype)."""
    return points - points.mean(0)


class PairGeometry:
    """The original squared distances of all pairs, computed once (float64, then cast).

    ``inv_sq_dist[i, j]`` is 1 / ||x_i - x_j||^2 for a valid pair and 0 on the diagonal
    and for duplicate pairs; ``valid`` is 1.0 on valid pairs and 0.0 elsewhere, so that
    ``|dy * inv_sq_dist - valid|`` is the pair distortion on valid pairs and exactly 0 on
    the others. Memory: two n x n tables, so the exact strategy suits a few thousand points.
    """

    @torch.no_grad()
    def __init__(self, points: torch.Tensor, memory_budget: int = DEFAULT_MEMORY_BUDGET):
        X = center(points.to(torch.float64))
        sq = X.pow(2).sum(1)
        n = points.shape[0]
        inv = torch.empty(n, n, dtype=points.dtype, device=points.device)
        valid = torch.empty(n, n, dtype=points.dtype, device=points.device)
        rows = max(1, int(memory_budget // (3 * 8 * n)))
        for i0 in range(0, n, rows):
            blk = slice(i0, i0 + rows)
            scale = sq[blk, None] + sq[None, :]
            dx = scale - 2 * (X[blk] @ X.T)
            ok = far_apart(dx, scale)
            ok[:, i0 : i0 + rows].fill_diagonal_(False)
            inv[blk] = torch.where(ok, 1.0 / torch.where(ok, dx, torch.ones_like(dx)), torch.zeros_like(dx)).to(
                inv.dtype
            )
            valid[blk] = ok.to(valid.dtype)
        self.inv_sq_dist, self.valid = inv, valid


@torch.no_grad()
def worst_pairs_of_samples(embedded: torch.Tensor, geometry: PairGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Index vectors (i, j), shape (N,), of the worst pair of each sample in ``embedded`` (N, k, n).

    A scan of the upper triangle of every sample, with no autograd graph, one cache-sized
    tile of rows at a time (whole n x n matrices per sample would leave the cache):
    memory stays at O(N n) besides the geometry table.
    """
    N, _, n = embedded.shape
    rows = max(1, TILE_BYTES // (N * n * embedded.element_size()))
    sq = embedded.pow(2).sum(1)  # (N, n)
    left = embedded.transpose(1, 2)
    best = torch.full((N,), -1.0, dtype=embedded.dtype, device=embedded.device)
    best_i = torch.zeros(N, dtype=torch.long, device=embedded.device)
    best_j = torch.zeros_like(best_i)
    for i0 in range(0, n, rows):
        i1 = min(i0 + rows, n)
        # dy = sq_i + sq_j - 2 <y_i, y_j> for rows i0:i1 and columns i0:, in one fused batched matmul
        dy = torch.baddbmm(sq[:, i0:i1, None] + sq[:, None, i0:], left[:, i0:i1], embedded[:, :, i0:], alpha=-2.0)
        dev = dy.mul_(geometry.inv_sq_dist[i0:i1, i0:]).sub_(geometry.valid[i0:i1, i0:]).abs_()
        value, flat = dev.view(N, -1).max(1)
        better = value > best
        width = n - i0
        best = torch.where(better, value, best)
        best_i = torch.where(better, i0 + flat // width, best_i)
        best_j = torch.where(better, i0 + flat % width, best_j)
    return best_i, best_j


class ActivePairs:
    """The active set: ``n_hard`` hard pairs (set by :meth:`set_hard` from an exact pass)
    plus ``n_random`` fresh uniformly random pairs (i != j) drawn by index every step.

    With ``memory`` > 0, up to that many hard pairs of earlier passes stay in the set
    after the current ones (most recent first, each pair once): a pair that was once among
    the worst is watched until it has been out of the worst for a while, instead of
    coming back unseen between two passes.
    """

    def __init__(self, n: int, n_hard: int, n_random: int, memory: int = 0):
        self.n, self.n_hard, self.n_random, self.memory = n, n_hard, n_random, memory
        self.hard_i = torch.empty(0, dtype=torch.long)
        self.hard_j = torch.empty(0, dtype=torch.long)

    def set_hard(self, i, j) -> None:
        i, j = torch.as_tensor(i).long().cpu(), torch.as_tensor(j).long().cpu()
        if self.memory:
            i, j = torch.cat([i, self.hard_i]), torch.cat([j, self.hard_j])
            keys = (torch.minimum(i, j) * self.n + torch.maximum(i, j)).numpy()
            first = torch.from_numpy(np.sort(np.unique(keys, return_index=True)[1]))
            keep = first[: self.n_hard + self.memory]
            i, j = i[keep], j[keep]
        self.hard_i, self.hard_j = i, j

    def draw_random(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Index vectors of this step's fresh random pairs."""
        return random_pairs(
            self.n, self.n_random, lambda low, high, size: torch.randint(low, high, (size,), device=device)
        )
