"""The screened all-pairs pass: float32 GEMMs for every pair, float64 for the few that decide.

At n = 10^5 points there are 5e9 pairs, and the exact pass is the cost of a pairs run.
This pass computes every pair's squared distances with float32 matrix products, bounds
their rounding error, and recomputes in float64 only the pairs that could change the
answer: the largest |ratio - 1| (or the K largest), and the smallest and largest ratio.
The answer is the float64 one; nothing of size n^2 is stored.

**One GEMM per tile and map.** With centered points x and their images y = A x (computed in
float64, then rounded to float32), the augmented rows

    l_i = [-2 x_i, 1, ||x_i||^2]    and    r_j = [x_j, ||x_j||^2, 1]

give l_i . r_j = ||x_i||^2 + ||x_j||^2 - 2 <x_i, x_j> = ||x_i - x_j||^2 =: dx, and the same
on y gives dy. No outer sums, no temporaries beyond the products.

**The error bound.** A float32 dot product of length m errs by at most gamma_m sum |a_l b_l|
with gamma_m = m u / (1 - m u), u = 2^-24 (Higham, Accuracy and Stability, Thm. 3.5), and
here sum |a_l b_l| <= ||x_i||^2 + ||x_j||^2 + 2 ||x_i|| ||x_j|| <= 2 (||x_i||^2 + ||x_j||^2).
Rounding the inputs to float32 adds at most 4 u (||x_i||^2 + ||x_j||^2). So with
s = max ||x_i||^2 + max ||x_j||^2 over the tile's two row blocks,

    |dx_32 - dx| <= e_x = 2 (2 gamma_{d+2} + 4 u) s,

where the leading 2 covers the rounding of the candidate tests below and of the float64
reference itself; e_y likewise with k.

**The candidate test, without a division.** The true (dx, dy) lies in the box
[dx_32 +- e_x] x [dy_32 +- e_y], and dx >= 0, dy >= 0. Some point of the box has
dy / dx >= H (for H >= 0) exactly when dy_32 + e_y >= H (dx_32 - e_x), i.e.

    dy_32 - H dx_32 >= -(e_y + H e_x),

and dy / dx <= L exactly when dy_32 - L dx_32 <= e_y + L e_x. With H = min(1 + tau, r_max)
and L = max(1 - tau, r_min), where tau is the K-th largest |ratio - 1| found so far and
r_min, r_max the extreme ratios found so far (all float64), a pair that fails both strict
tests can change none of the answers (a tie with the K-th value may go either way). The
strict tests matter: at M = 0 every ratio is 0, every pair ties, and none is rechecked.
Duplicate pairs (dx near 0) pass a strict test whenever e_y + H e_x > 0 (the bounds carry
a factor 2 of slack), so every one of them is rechecked and left out as in the float64
path; for a map that sends everything to 0 they are found by distance instead. A tile
costs two GEMMs, two fused scalings and two reductions per map; a tile where no pair passes
a test is done.

**The recheck** is float64: by explicit differences for a few candidates, by the
float64 GEMM of the tile for many (the first tiles, before K values are known).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from jl_lightning.core.pairs import (
    DEFAULT_MEMORY_BUDGET,
    UNIT_ROUNDOFF_32,
    far_apart,
    gamma32,
    pair_tile_count,
    pair_tiles_of,
    sq_distances,
)
from jl_lightning.core.sharding import SINGLE, Shard
from jl_lightning.metrics.heartbeat import Heartbeat
from jl_lightning.metrics.tiles import to_tensor
from jl_lightning.metrics.topk import TopK

CPU_TILE_ROWS = 1024  # a 1024-row tile keeps the float32 GEMM near its peak rate on a CPU
CUDA_MAX_TILE_ROWS = 16384
PREPASS_ROWS = 8192  # rows per chunk while centering, mapping and rounding the points
RECHECK_CHUNK = 8192  # candidates per float64 recheck batch (bounded memory)
# pairs per float64 block of a dense recheck: each of its ~8 float64/long temporaries stays
# at 128 MB, so a CUDA tile of 16384^2 pairs is rechecked in blocks of 1024 rows
RECHECK_DENSE_PAIRS = 2**24


def gemm_error_factor(m: int) -> float:
    """c with |dx_32 - dx| <= c (max ||x_i||^2 + max ||x_j||^2) for augmented rows of length m."""
    return 2.0 * (2.0 * gamma32(m) + 4.0 * UNIT_ROUNDOFF_32)


def tile_rows(device: torch.device, n_maps: int, memory_budget: int) -> int:
    """Rows per square tile: (2 + 3 per map) float32 b x b buffers within the budget, and
    on CUDA within a quarter of the free device memory."""
    per_row2 = 4 * (2 + 3 * n_maps)
    budget = memory_budget
    cap = CPU_TILE_ROWS
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        budget, cap = max(memory_budget, free // 4), CUDA_MAX_TILE_ROWS
    return max(64, min(cap, int(math.sqrt(budget / per_row2)) // 64 * 64))


def _left(rows: torch.Tensor) -> torch.Tensor:
    """[-2 v, 1, ||v||^2] from the stored [v, ||v||^2, 1] (exact in float32)."""
    return torch.cat([rows[:, :-2] * -2.0, rows[:, -1:], rows[:, -2:-1]], 1)


class _Rows:
    """One set of rows (the points, or ``other``): centered, mapped in float64 and stored
    as float32 augmented rows [v, ||v||^2, 1] for v = x and for v = A_m x of every map."""

    def __init__(self, source, mean: torch.Tensor, applies, device):
        self.source, self.mean, self.applies, self.device = source, mean, applies, device
        n, d = source.shape
        self.n = int(n)
        self.X = None
        self.Y: list[torch.Tensor] = []
        for start in range(0, self.n, PREPASS_ROWS):
            x, ys = self.exact_rows(slice(start, start + PREPASS_ROWS))
            if self.X is None:
                self.X = torch.empty(self.n, d + 2, dtype=torch.float32, device=device)
                self.Y = [torch.empty(self.n, y.shape[1] + 2, dtype=torch.float32, device=device) for y in ys]
            stop = start + len(x)
            for store, v in zip([self.X, *self.Y], [x, *ys]):
                store[start:stop, :-2] = v
                store[start:stop, -2] = v.pow(2).sum(1)
                store[start:stop, -1] = 1.0
        self.finite = bool(torch.isfinite(self.X).all()) and all(bool(torch.isfinite(y).all()) for y in self.Y)

    def exact_rows(self, index) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Centered float64 rows and their float64 images under every map."""
        if isinstance(index, torch.Tensor) and not isinstance(self.source, torch.Tensor):
            index = index.cpu().numpy()
        x = to_tensor(self.source[index], torch.float64, self.device) - self.mean
        return x, [apply(x) for apply in self.applies]


class _Extremes(TopK):
    """Running float64 answer of one map: the K largest deviations (values, i, j), the
    extreme ratios, the valid-pair count and the duplicates found."""

    def __init__(self, keep: int, device):
        super().__init__(keep, device)
        self.rmin, self.rmax = math.inf, -math.inf
        self.zeros = 0

    def thresholds(self) -> tuple[float, float]:
        """(H, L): a pair matters if its ratio could be >= H or <= L."""
        tau = self.floor
        return min(1.0 + tau, self.rmax), max(1.0 - tau, self.rmin)

    def add(self, ratios: torch.Tensor, valid: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> None:
        self.zeros += int((~valid).sum())
        if not bool(valid.any()):
            return
        ratios, i, j = ratios[valid], i[valid], j[valid]
        lo, hi = (float(v) for v in torch.aminmax(ratios))
        self.rmin, self.rmax = min(self.rmin, lo), max(self.rmax, hi)
        self.push((ratios - 1.0).abs(), i, j)


class _Candidates(TopK):
    """The C largest float32 deviations of one map, with no float64 recheck: candidate pairs
    for training to watch (``ActivePairsLoss``), never a reported figure, with their float32
    squared distances (so that the loss need not form the pairs' differences). A pair whose
    float32 squared distance is within the rounding bound of 0 is left out."""

    def __init__(self, keep: int, device):
        super().__init__(keep, device, torch.float32, extra=1)
        self._buffer: torch.Tensor | None = None

    def scan(
        self, dx: torch.Tensor, dy: torch.Tensor, lower: torch.Tensor | None, i0: int, j0: int, e_x: float
    ) -> None:
        # |dy / dx - 1| in one buffer kept between tiles; 0 / 0 (a duplicate pair) reads as 0
        # (a NaN would hide its row from the row maxima below), x / 0 stays large and is
        # dropped by distance below, as is every pair within rounding of 0
        if self._buffer is None or self._buffer.shape != dy.shape:
            self._buffer = torch.empty_like(dy)
        dev = torch.div(dy, dx, out=self._buffer).sub_(1.0).abs_().nan_to_num_(nan=0.0)
        if lower is not None:
            dev.masked_fill_(lower, -1.0)
        if self.full:
            # a tile-wide boolean mask and its nonzero cost more than the division: look
            # only in the rows whose maximum passes the threshold (few, on most tiles)
            tau = self.floor
            rows = (dev.amax(1) > tau).nonzero(as_tuple=True)[0]
            if not len(rows):
                return
            a, b = (dev.index_select(0, rows) > tau).nonzero(as_tuple=True)
            a = rows[a]
        else:
            a, b = (dev >= 0).nonzero(as_tuple=True)
        distances = dx[a, b]
        keep = distances > e_x  # not within rounding of a duplicate pair
        a, b = a[keep], b[keep]
        if len(a):
            self.push(dev[a, b], a + i0, b + j0, distances[keep])


def _recheck_sparse(rows_i: _Rows, rows_j: _Rows, m: int, gi: torch.Tensor, gj: torch.Tensor, state: _Extremes):
    """Float64 ratios of the pairs (gi, gj) by explicit differences, in bounded chunks."""
    for start in range(0, len(gi), RECHECK_CHUNK):
        a, b = gi[start : start + RECHECK_CHUNK], gj[start : start + RECHECK_CHUNK]
        xa, ya = rows_i.exact_rows(a)
        xb, yb = rows_j.exact_rows(b)
        dx = (xa - xb).pow(2).sum(1)
        dy = (ya[m] - yb[m]).pow(2).sum(1)
        valid = far_apart(dx, xa.pow(2).sum(1) + xb.pow(2).sum(1))
        state.add(dy / torch.where(valid, dx, torch.ones_like(dx)), valid, a, b)


def _recheck_dense(
    rows_i: _Rows, rows_j: _Rows, m: int, i0: int, j0: int, mask: torch.Tensor, state: _Extremes
) -> None:
    """Float64 ratios of the masked pairs of a tile, by float64 GEMMs over blocks of its
    rows (at most ``RECHECK_DENSE_PAIRS`` pairs each, so memory stays bounded on any tile)."""
    step = max(1, RECHECK_DENSE_PAIRS // mask.shape[1])
    for r0 in range(0, mask.shape[0], step):
        _recheck_block(rows_i, rows_j, m, i0 + r0, j0, mask[r0 : r0 + step], state)


def _recheck_block(
    rows_i: _Rows, rows_j: _Rows, m: int, i0: int, j0: int, mask: torch.Tensor, state: _Extremes
) -> None:
    xi, yi = rows_i.exact_rows(slice(i0, i0 + mask.shape[0]))
    xj, yj = rows_j.exact_rows(slice(j0, j0 + mask.shape[1]))
    ni, nj = xi.pow(2).sum(1), xj.pow(2).sum(1)
    scale = ni[:, None] + nj[None, :]
    dx = sq_distances(xi, xj, scale)
    dy = sq_distances(yi[m], yj[m])
    valid = far_apart(dx, scale)
    ratios = dy / torch.where(valid, dx, torch.ones_like(dx))
    a, b = mask.nonzero(as_tuple=True)
    state.add(ratios[a, b], valid[a, b], a + i0, b + j0)


@contextmanager
def _ieee_float32():
    """Full float32 GEMMs for the pass: TF32 (a 10-bit mantissa) would break the bound."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


@torch.no_grad()
def screened_pairs(
    applies,
    points,
    other=None,
    worst: int = 0,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    device=None,
    progress=None,
    shard: Shard = SINGLE,
    candidates: int = 0,
):
    """Per map (X -> X A^T in float64): (epsilon, worst pair, r_min, r_max, count, zeros,
    worst-K) over every pair i < j of ``points``, or every (row of points, row of other).
    ``candidates=C``: also the C largest deviations by the float32 products alone
    (``_Candidates``), in the same pass.

    Returns None when the float32 copies overflow (the caller then uses the float64 path).
    ``progress``: a tqdm bar over the tiles with the expected time; None shows it on a
    terminal once a pass has run for 3 s, False never. ``shard``: only the tiles rank,
    rank + world, ... (every rank prepares all rows; the figures are this rank's pairs').
    """
    with _ieee_float32():
        return _screened_pairs(applies, points, other, worst, memory_budget, device, progress, shard, candidates)


def _screened_pairs(applies, points, other, worst, memory_budget, device, progress, shard=SINGLE, candidates=0):

    device = torch.device(device or "cpu")
    cross = other is not None
    mean = to_tensor(
        points.mean(0, dtype=torch.float64) if isinstance(points, torch.Tensor) else points.mean(0, dtype=np.float64),
        torch.float64,
        device,
    )
    left_rows = _Rows(points, mean, applies, device)
    right_rows = _Rows(other, mean, applies, device) if cross else left_rows
    if not (left_rows.finite and right_rows.finite):
        return None
    b = tile_rows(device, len(applies), memory_budget)
    d = left_rows.X.shape[1] - 2
    c_x = gemm_error_factor(d + 2)
    c_y = [gemm_error_factor(y.shape[1]) for y in left_rows.Y]
    states = [_Extremes(max(1, worst), device) for _ in applies]
    watch = [_Candidates(candidates, device) for _ in applies] if candidates else None
    n_other = right_rows.n if cross else None
    mine_total = len(range(shard.rank, pair_tile_count(left_rows.n, b, n_other), shard.world))
    bar, beat = _tile_progress(mine_total, left_rows.n, len(applies), progress)
    done = 0
    total = 0
    for i0, mine in pair_tiles_of(left_rows.n, b, n_other, shard.rank, shard.world):
        li = _left(left_rows.X[i0 : i0 + b])
        lyi = [_left(y[i0 : i0 + b]) for y in left_rows.Y]
        si = float(left_rows.X[i0 : i0 + b, -2].max())
        syi = [float(y[i0 : i0 + b, -2].max()) for y in left_rows.Y]
        for j0 in mine:
            rj = right_rows.X[j0 : j0 + b]
            dx = li @ rj.T
            total += dx.numel() if cross or i0 != j0 else dx.shape[0] * (dx.shape[0] - 1) // 2
            e_x = c_x * (si + float(rj[:, -2].max()))
            lower = None
            if not cross and i0 == j0:
                lower = torch.ones(dx.shape, dtype=torch.bool, device=device).tril_()
            for m, state in enumerate(states):
                ryj = right_rows.Y[m][j0 : j0 + b]
                dy = lyi[m] @ ryj.T
                e_y = c_y[m] * (syi[m] + float(ryj[:, -2].max()))
                if watch is not None:
                    watch[m].scan(dx, dy, lower, i0, j0, e_x)
                tile = _Tile(left_rows, right_rows, m, i0, j0, dx, lower)
                _screen_tile(tile, dy, e_x, e_y, state)
            bar.update(1)
            done += 1
            beat.tick(done)
    bar.close()
    return [
        dict(_finish(state, total, worst), candidates=None if watch is None else watch[m].sorted())
        for m, state in enumerate(states)
    ]


def _tile_progress(tiles: int, n: int, maps: int, progress) -> tuple:
    """A tqdm bar over this rank's ``tiles`` (on a terminal after 3 s; ``progress`` False: never)
    and the log's line every 30 s (train.log has no bar; silent for a pass shorter than that)."""
    bar = tqdm(
        total=tiles,
        desc="exact pairs pass",
        unit="tile",
        delay=3.0,
        leave=False,
        disable=None if progress is None else not progress,
    )
    return bar, Heartbeat(f"exact pass over the pairs of {n} points ({maps} map(s))", tiles)


@dataclass
class _Tile:
    """One tile of a screened pass for map ``m``: the row blocks at i0 and j0, their float32
    products ``dx`` (the original side), and ``lower`` (on a diagonal tile, the pairs j <= i
    that do not count; None elsewhere)."""

    left: _Rows
    right: _Rows
    m: int
    i0: int
    j0: int
    dx: torch.Tensor
    lower: torch.Tensor | None


def _screen_tile(tile: _Tile, dy: torch.Tensor, e_x: float, e_y: float, state: _Extremes) -> None:
    """Recheck in float64 every pair of the tile whose float32 deviation, within its round-off
    bounds ``e_x`` and ``e_y``, could beat the extremes kept so far (all of them while fewer
    than K are kept)."""
    dx, lower = tile.dx, tile.lower
    if not state.full:  # every pair can still enter the K kept
        mask = torch.ones(dx.shape, dtype=torch.bool, device=dx.device)
        if lower is not None:
            mask &= ~lower
        _recheck_dense(tile.left, tile.right, tile.m, tile.i0, tile.j0, mask, state)
        return
    high, low = state.thresholds()
    q = torch.add(dy, dx, alpha=-high)
    p = torch.add(dy, dx, alpha=-low)
    if lower is not None:
        q.masked_fill_(lower, -math.inf)
        p.masked_fill_(lower, math.inf)
    q_limit, p_limit = -(e_y + high * e_x), e_y + low * e_x
    # a map that sends every pair to 0 has both limits at 0, where the strict tests no longer
    # catch the duplicate pairs: look for them by distance
    degenerate = high * e_x + e_y <= 0
    if not degenerate and float(q.max()) <= q_limit and float(p.min()) >= p_limit:
        return
    mask = (q > q_limit) | (p < p_limit)
    if degenerate:
        mask |= (dx <= e_x) if lower is None else (dx <= e_x) & ~lower
    picked = mask.nonzero(as_tuple=True)
    if len(picked[0]) * 16 > mask.numel():
        _recheck_dense(tile.left, tile.right, tile.m, tile.i0, tile.j0, mask, state)
    else:
        _recheck_sparse(tile.left, tile.right, tile.m, picked[0] + tile.i0, picked[1] + tile.j0, state)


def _finish(state: _Extremes, total: int, worst: int) -> dict:
    i, j, values = state.sorted()
    found = len(values) > 0
    return {
        "epsilon": float(values[0]) if found else -1.0,
        "worst_index": (int(i[0]), int(j[0])) if found else (-1, -1),
        "min_ratio": state.rmin,
        "max_ratio": state.rmax,
        "count": total - state.zeros,
        "zeros": state.zeros,
        "worst": (i, j, values) if worst else None,
    }
