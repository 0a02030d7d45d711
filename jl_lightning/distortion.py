"""Distortion of a linear map on a set of points: the one place it is computed.

The distortion of A on x is the paper's squared-norm definition

    eps(A, x) = | ||A x||^2 / ||x||^2 - 1 |,

taken over every point (``mode="norms"``) or over every pair of points, with x = x_i - x_j
(``mode="pairs"``). A run's figure is the maximum. Everything here is exact: every
point or pair, never a sample. It runs in float64 by default and in chunks, so the
temporaries stay within ``memory_budget`` bytes whatever n is.

* Pairs are computed in the embedded space, never by forming difference vectors:
  ||y_i - y_j||^2 = ||y_i||^2 + ||y_j||^2 - 2 <y_i, y_j>, with Y = X A^T, and the same
  identity on X for the original squared distances, one block of the Gram matrix at a time.
* Pairs at zero distance (duplicate points) are skipped and counted, not divided by zero.
* The median and the 99th percentile of |ratio - 1| are exact (numpy's "linear"
  definition). For pairs they come from two passes (a histogram, then the values
  in the bins that hold the wanted ranks), so memory stays bounded.

``ratio_distortion`` is the elementwise formula; the training loss uses it too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import numpy as np
import torch

DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of temporaries per chunk
MODES = ("norms", "pairs")
ZERO_DISTANCE_RTOL = 1e-12  # ||x_i - x_j||^2 <= rtol (||x_i||^2 + ||x_j||^2) counts as a duplicate
_HISTOGRAM_BINS = 1 << 16
_MANY_TILE_ROWS = 512  # max_distortions' square tiles: 512^2 float64 = 2 MB each


def ratio_distortion(embedded_sq: torch.Tensor, original_sq: torch.Tensor) -> torch.Tensor:
    """|embedded_sq / original_sq - 1|, elementwise (broadcasting)."""
    return (embedded_sq / original_sq - 1.0).abs()


@dataclass(frozen=True)
class DistortionReport:
    """Exact distortion of a linear map on n points, or on their pairs."""

    mode: str  # "norms" or "pairs"
    epsilon: float  # max |ratio - 1|
    worst_index: int | tuple[int, int]  # the point, or the pair (i, j) with i < j, attaining it
    min_ratio: float  # min ||A x||^2 / ||x||^2
    max_ratio: float
    mean_abs: float  # mean |ratio - 1|
    median_abs: float  # median |ratio - 1|
    p99_abs: float  # 99th percentile of |ratio - 1|
    count: int  # points, or pairs that entered the figures
    zero_distance_pairs: int = 0  # pairs skipped as duplicates (pairs mode)

    @property
    def multiplicative(self) -> float:
        """sqrt(max ratio / min ratio): the scale-free distortion."""
        if self.min_ratio <= 0:
            return math.inf
        return math.sqrt(self.max_ratio / self.min_ratio)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["multiplicative"] = self.multiplicative
        return out


LinearMap = Callable[[torch.Tensor], torch.Tensor]


def as_linear_map(linear_map, dtype: torch.dtype) -> tuple[LinearMap, int, torch.device]:
    """(X -> X A^T, d, device) for a (k, d) matrix or an object with ``apply(X)`` and ``d``.

    An operator such as the SRHT is applied as it is, never materialized.
    """
    if hasattr(linear_map, "apply") and not isinstance(linear_map, (np.ndarray, torch.Tensor)):
        return (lambda X: linear_map.apply(X).to(dtype)), int(linear_map.d), torch.device("cpu")
    device = linear_map.device if isinstance(linear_map, torch.Tensor) else None
    A = _as_tensor(linear_map, dtype, device)
    if A.ndim != 2:
        raise ValueError(f"the linear map must be a 2-D (k, d) matrix, got shape {tuple(A.shape)}")
    return (lambda X: X @ A.T), A.shape[1], A.device


def _as_tensor(array, dtype: torch.dtype, device=None) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array.detach().to(dtype=dtype, device=device)
    return torch.as_tensor(np.asarray(array), dtype=dtype, device=device)


def chunk_rows(d: int, k: int, itemsize: int, memory_budget: int) -> int:
    """Rows per chunk (norms mode) so that a chunk of points and its image fit the budget."""
    per_row = (d + k + 2) * itemsize
    return max(1, int(memory_budget // per_row))


def block_rows(d: int, k: int, itemsize: int, memory_budget: int) -> int:
    """Rows per block (pairs mode): two row blocks and ~6 (b x b) temporaries fit the budget."""
    # 6 b^2 + 2 b (d + k) <= budget / itemsize
    c = memory_budget / itemsize
    b = (-2 * (d + k) + math.sqrt(4 * (d + k) ** 2 + 24 * c)) / 12
    return max(1, int(b))


def _check_points(points, d: int) -> int:
    shape = getattr(points, "shape", None)
    if shape is None or len(shape) != 2:
        raise ValueError("points must be a 2-D (n, d) array")
    if shape[1] != d:
        raise ValueError(f"points have dimension {shape[1]}, the linear map expects d={d}")
    if shape[0] == 0:
        raise ValueError("points is empty")
    return int(shape[0])


def _norm_chunks(apply: LinearMap, points, rows: int, dtype, device) -> Iterator[tuple[int, torch.Tensor]]:
    for start in range(0, len(points), rows):
        X = _as_tensor(points[start:start + rows], dtype, device)
        yield start, apply(X).pow(2).sum(1) / X.pow(2).sum(1)


def _pair_blocks(apply: LinearMap, points, rows: int, dtype, device, other=None
                 ) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor, int]]:
    """Yield (i0, j0, ratios, valid mask, zero-distance count) block by block.

    Without ``other``: the pairs i < j of ``points`` (blocks i0 <= j0 of the upper triangle).
    With ``other``: every pair (i, j) of a row of ``points`` and a row of ``other``.
    """
    cross = other is not None
    second = other if cross else points
    starts = list(range(0, len(points), rows))
    second_starts = list(range(0, len(second), rows))
    for a, i0 in enumerate(starts):
        Xi = _as_tensor(points[i0:i0 + rows], dtype, device)
        Yi = apply(Xi)
        nxi, nyi = Xi.pow(2).sum(1), Yi.pow(2).sum(1)
        for j0 in (second_starts if cross else starts[a:]):
            if j0 == i0 and not cross:
                Xj, Yj, nxj, nyj = Xi, Yi, nxi, nyi
            else:
                Xj = _as_tensor(second[j0:j0 + rows], dtype, device)
                Yj = apply(Xj)
                nxj, nyj = Xj.pow(2).sum(1), Yj.pow(2).sum(1)
            scale = nxi[:, None] + nxj[None, :]
            dx = scale - 2 * (Xi @ Xj.T)
            dy = nyi[:, None] + nyj[None, :] - 2 * (Yi @ Yj.T)
            valid = torch.ones_like(dx, dtype=torch.bool)
            if j0 == i0 and not cross:
                valid = torch.triu(valid, diagonal=1)
            zero = valid & (dx <= ZERO_DISTANCE_RTOL * scale)
            valid &= ~zero
            yield i0, j0, dy / torch.where(valid, dx, torch.ones_like(dx)), valid, int(zero.sum())


def max_distortions(linear_maps: list, points, mode: str = "norms", *,
                    memory_budget: int = DEFAULT_MEMORY_BUDGET, dtype: torch.dtype = torch.float64) -> np.ndarray:
    """The exact worst-case epsilon of each of several maps on the same points, in one pass.

    Equal to ``[max_distortion(m, points, mode) for m in linear_maps]``; in pairs mode the
    original distances of every tile are computed once for all maps, which makes the
    random baselines' many draws several times cheaper.
    """
    return distortion_stats(linear_maps, points, mode, memory_budget=memory_budget, dtype=dtype,
                            full=False)["epsilon"]


@torch.no_grad()
def distortion_stats(linear_maps: list, points, mode: str = "norms", *, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                     dtype: torch.dtype = torch.float64, full: bool = True) -> dict[str, np.ndarray]:
    """Exact figures of several maps on the same points in one pass: arrays (one entry per
    map) ``epsilon``, and with ``full`` also ``min_ratio``, ``max_ratio`` and ``mean_abs``
    (the mean |ratio - 1|), equal to the fields of :func:`evaluate`'s report."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    m_count = len(linear_maps)
    stats = {"epsilon": np.full(m_count, -1.0)}
    if full:
        stats.update(min_ratio=np.full(m_count, math.inf), max_ratio=np.full(m_count, -math.inf),
                     mean_abs=np.zeros(m_count))
    if not linear_maps:
        return stats
    resolved = [as_linear_map(m, dtype) for m in linear_maps]
    applies, d, device = [r[0] for r in resolved], resolved[0][1], resolved[0][2]
    if any(r[1] != d for r in resolved):
        raise ValueError("all maps must have the same input dimension d")
    n = _check_points(points, d)
    itemsize = torch.finfo(dtype).bits // 8
    probe_k = max(apply(torch.zeros(1, d, dtype=dtype, device=device)).shape[1] for apply in applies)
    eps = stats["epsilon"]
    count = 0
    if mode == "norms":
        rows = chunk_rows(d, probe_k * m_count, itemsize, memory_budget)
        for start in range(0, n, rows):
            X = _as_tensor(points[start:start + rows], dtype, device)
            nx = X.pow(2).sum(1)
            count += len(X)
            for m, apply in enumerate(applies):
                r = apply(X).pow(2).sum(1) / nx
                lo, hi = (float(v) for v in torch.aminmax(r))
                eps[m] = max(eps[m], hi - 1.0, 1.0 - lo)
                if full:
                    stats["min_ratio"][m] = min(stats["min_ratio"][m], lo)
                    stats["max_ratio"][m] = max(stats["max_ratio"][m], hi)
                    stats["mean_abs"][m] += float((r - 1.0).abs().sum())
        if full:
            stats["mean_abs"] /= count
        return stats
    if n < 2:
        raise ValueError("pairs mode needs at least 2 points")
    # cache-sized square tiles: a handful of (b x b) temporaries per map stay in cache
    rows = min(block_rows(d, probe_k, itemsize, memory_budget), _MANY_TILE_ROWS)
    starts = list(range(0, n, rows))
    for a, i0 in enumerate(starts):
        Xi = _as_tensor(points[i0:i0 + rows], dtype, device)
        Yis = [apply(Xi) for apply in applies]
        for j0 in starts[a:]:
            Xj = Xi if j0 == i0 else _as_tensor(points[j0:j0 + rows], dtype, device)
            Yjs = Yis if j0 == i0 else [apply(Xj) for apply in applies]
            nxi, nxj = Xi.pow(2).sum(1), Xj.pow(2).sum(1)
            scale = nxi[:, None] + nxj[None, :]
            dx = torch.addmm(scale, Xi, Xj.T, alpha=-2.0)
            valid = dx > ZERO_DISTANCE_RTOL * scale
            if j0 == i0:
                valid = torch.triu(valid, diagonal=1)
            block_count = int(valid.sum())
            if block_count == 0:
                continue
            count += block_count
            inv = torch.where(valid, 1.0 / dx, torch.zeros_like(dx))
            neutral = (~valid).to(dtype)  # ratio 1 (deviation 0) where a pair is not counted
            for m, (Yi, Yj) in enumerate(zip(Yis, Yjs)):
                dy = torch.addmm(Yi.pow(2).sum(1)[:, None] + Yj.pow(2).sum(1)[None, :], Yi, Yj.T, alpha=-2.0)
                r = torch.addcmul(neutral, dy, inv)
                lo, hi = (float(v) for v in torch.aminmax(r))
                eps[m] = max(eps[m], hi - 1.0, 1.0 - lo)
                if full:
                    stats["min_ratio"][m] = min(stats["min_ratio"][m], float(r.masked_fill(~valid, math.inf).min()))
                    stats["max_ratio"][m] = max(stats["max_ratio"][m], float(r.masked_fill(~valid, -math.inf).max()))
                    stats["mean_abs"][m] += float((r - 1.0).abs_().sum())
    if count == 0:
        raise ValueError("every pair of points is at distance zero: the pairs distortion is undefined")
    if full:
        stats["mean_abs"] /= count
    return stats


@torch.no_grad()
def ratio_histogram(linear_map, points, mode: str, edges: np.ndarray, *,
                    memory_budget: int = DEFAULT_MEMORY_BUDGET, dtype: torch.dtype = torch.float64) -> np.ndarray:
    """Counts of the exact ratios ||Ax||^2/||x||^2 (points or valid pairs) in the bins ``edges``
    (values outside go to the first or last bin), accumulated chunk by chunk: bounded memory."""
    apply, d, device = as_linear_map(linear_map, dtype)
    _check_points(points, d)
    edges_t = torch.as_tensor(np.asarray(edges, dtype=np.float64))
    bins = len(edges_t) - 1
    counts = torch.zeros(bins, dtype=torch.long)
    itemsize = torch.finfo(dtype).bits // 8
    k = apply(torch.zeros(1, d, dtype=dtype, device=device)).shape[1]

    def add(values):
        idx = (torch.bucketize(values.cpu().to(torch.float64), edges_t, right=True) - 1).clamp_(0, bins - 1)
        counts.add_(torch.bincount(idx, minlength=bins))

    if mode == "norms":
        for _, ratios in _norm_chunks(apply, points, chunk_rows(d, k, itemsize, memory_budget), dtype, device):
            add(ratios)
    else:
        for _, _, ratios, valid, _ in _pair_blocks(apply, points, block_rows(d, k, itemsize, memory_budget),
                                                   dtype, device):
            add(ratios[valid])
    return counts.numpy()


@torch.no_grad()
def evaluate(linear_map, points, mode: str = "norms", *, memory_budget: int = DEFAULT_MEMORY_BUDGET,
             dtype: torch.dtype = torch.float64, quantiles: bool = True, other=None,
             screen="auto") -> DistortionReport:
    """Exact distortion of ``linear_map`` on ``points`` (n, d), over points or over pairs.

    ``linear_map`` is a (k, d) matrix (numpy or torch) or an operator with ``apply(X)``
    mapping an (m, d) tensor to (m, k), and ``d``. ``quantiles=False`` skips the median
    and 99th percentile (reported as NaN), which saves the second pass in pairs mode.
    ``other`` (pairs mode only): a second set of points; the pairs are then every
    (row of ``points``, row of ``other``), e.g. train x held-out, and ``worst_index``
    indexes (points, other).
    ``screen``: in norms mode with a dense matrix and float64, use
    :func:`screened_norm_distortion` (same epsilon, worst point and min/max ratio; mean,
    median and p99 float32-accurate; 5x faster and a few MB instead of hundreds);
    ``"auto"`` does so when n * d >= ``SCREEN_AUTO_SIZE``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if other is not None and mode != "pairs":
        raise ValueError("a second set of points (other=...) needs mode='pairs'")
    apply, d, device = as_linear_map(linear_map, dtype)
    n = _check_points(points, d)
    itemsize = torch.finfo(dtype).bits // 8
    probe_k = apply(torch.zeros(1, d, dtype=dtype, device=device)).shape[1]
    if mode == "norms":
        dense = not (hasattr(linear_map, "apply") and not isinstance(linear_map, (np.ndarray, torch.Tensor)))
        if screen == "auto":
            screen = n * d >= SCREEN_AUTO_SIZE
        if screen and dense and dtype == torch.float64 and device.type == "cpu":
            return screened_norm_distortion(linear_map, points, quantiles=quantiles)
        rows = chunk_rows(d, probe_k, itemsize, memory_budget)
        return _evaluate_norms(apply, points, n, rows, dtype, device, quantiles)
    if other is not None:
        _check_points(other, d)
    elif n < 2:
        raise ValueError("pairs mode needs at least 2 points")
    rows = block_rows(d, probe_k, itemsize, memory_budget)
    return _evaluate_pairs(apply, points, rows, dtype, device, quantiles, other)


def _evaluate_norms(apply, points, n, rows, dtype, device, quantiles) -> DistortionReport:
    eps, worst, rmin, rmax, total = -1.0, -1, math.inf, -math.inf, 0.0
    deviations = np.empty(n) if quantiles else None  # n floats: the exact median needs them all
    for start, ratios in _norm_chunks(apply, points, rows, dtype, device):
        dev = (ratios - 1.0).abs()
        i = int(dev.argmax())
        if float(dev[i]) > eps:
            eps, worst = float(dev[i]), start + i
        rmin, rmax = min(rmin, float(ratios.min())), max(rmax, float(ratios.max()))
        total += float(dev.sum())
        if quantiles:
            deviations[start:start + len(dev)] = dev.cpu().numpy()
    median = p99 = math.nan
    if quantiles:
        median, p99 = (float(v) for v in np.quantile(deviations, [0.5, 0.99]))
    return DistortionReport("norms", eps, worst, rmin, rmax, total / n, median, p99, n)


SCREEN_AUTO_SIZE = 50_000_000  # n * d from which norms-mode evaluation is screened by default
_SCREEN_TILE_ROWS = 4096  # rows per float32 tile of the screened norms pass (cache-sized for d ~ 1000)
_UNIT_ROUNDOFF_32 = 2.0 ** -24


@torch.no_grad()
def screened_norm_distortion(matrix, points, *, quantiles: bool = True) -> DistortionReport:
    """Norms-mode report with float32 speed and the float64 answer for the extremes.

    Pass 1 computes every ratio in float32 (tiles of ``_SCREEN_TILE_ROWS`` rows) with a
    rigorous bound on its rounding error. With u = 2^-24 and gamma_m = m u / (1 - m u):
    each embedded coordinate is off by at most gamma_{d+2} ||a_r|| ||x|| (the standard
    dot-product bound with Cauchy-Schwarz, A rounded to float32 included), so ||Ax||^2 is
    off by at most (2 g F sqrt(r) + g^2 F^2) ||x||^2 with g = gamma_{d+2}, F = ||A||_F;
    the float32 norms add gamma_k and gamma_{d+3} relative errors. Pass 2 recomputes in
    float64 every point whose screened value could be the largest |ratio - 1|, the
    smallest or the largest ratio, so ``epsilon``, ``worst_index``, ``min_ratio`` and
    ``max_ratio`` are the float64 figures of :func:`evaluate` (up to float64 rounding).
    The mean, median and 99th percentile come from the float32 pass (absolute error at
    most the bound, in practice ~1e-7).

    ``matrix`` is a dense (k, d) matrix; memory: one tile plus 3 floats per point.
    """
    A64 = _as_tensor(matrix, torch.float64)
    if A64.ndim != 2:
        raise ValueError(f"the linear map must be a 2-D (k, d) matrix, got shape {tuple(A64.shape)}")
    d = A64.shape[1]
    n = _check_points(points, d)
    A32 = A64.to(torch.float32)
    fro = float(A64.norm())
    gamma = (d + 2) * _UNIT_ROUNDOFF_32 / (1 - (d + 2) * _UNIT_ROUNDOFF_32)
    ratios = np.empty(n)
    for start in range(0, n, _SCREEN_TILE_ROWS):
        X = _as_tensor(points[start:start + _SCREEN_TILE_ROWS], torch.float32)
        ny = torch.linalg.vector_norm(X @ A32.T, dim=1).double().square_()
        nx = torch.linalg.vector_norm(X, dim=1).double().square_()
        ratios[start:start + len(X)] = (ny / nx).numpy()
    k = A64.shape[0]
    gamma_k = (k + 3) * _UNIT_ROUNDOFF_32 / (1 - (k + 3) * _UNIT_ROUNDOFF_32)
    gamma_x = (d + 3) * _UNIT_ROUNDOFF_32 / (1 - (d + 3) * _UNIT_ROUNDOFF_32)
    product = (2 * gamma * fro * np.sqrt(ratios) + (gamma * fro) ** 2) * (1 + gamma_k)
    delta = 1.01 * (product + (gamma_k + gamma_x) * ratios) / (1 - gamma_x)
    dev = np.abs(ratios - 1.0)
    candidates = np.flatnonzero((dev + delta >= (dev - delta).max())
                                | (ratios - delta <= (ratios + delta).min())
                                | (ratios + delta >= (ratios - delta).max()))
    X = _as_tensor(points[candidates] if not isinstance(points, torch.Tensor) else points[torch.from_numpy(candidates)],
                   torch.float64)
    exact = ((X @ A64.T).pow(2).sum(1) / X.pow(2).sum(1)).numpy()
    exact_dev = np.abs(exact - 1.0)
    i = int(exact_dev.argmax())
    median = p99 = math.nan
    if quantiles:
        median, p99 = (float(v) for v in np.quantile(dev, [0.5, 0.99]))
    return DistortionReport("norms", float(exact_dev[i]), int(candidates[i]), float(exact.min()), float(exact.max()),
                            float(dev.mean()), median, p99, n)


def _evaluate_pairs(apply, points, rows, dtype, device, quantiles, other=None) -> DistortionReport:
    eps, worst, rmin, rmax, total, count, zeros = -1.0, (-1, -1), math.inf, -math.inf, 0.0, 0, 0
    for i0, j0, ratios, valid, zero in _pair_blocks(apply, points, rows, dtype, device, other):
        zeros += zero
        if not bool(valid.any()):
            continue
        dev = torch.where(valid, (ratios - 1.0).abs(), torch.full_like(ratios, -1.0))
        flat = int(dev.argmax())
        if float(dev.view(-1)[flat]) > eps:
            eps = float(dev.view(-1)[flat])
            worst = (i0 + flat // dev.shape[1], j0 + flat % dev.shape[1])
        r = ratios[valid]
        rmin, rmax = min(rmin, float(r.min())), max(rmax, float(r.max()))
        total += float((r - 1.0).abs().sum())
        count += int(r.numel())
    if count == 0:
        raise ValueError("every pair of points is at distance zero: the pairs distortion is undefined")
    median = p99 = math.nan
    if quantiles:
        median, p99 = _pair_quantiles(apply, points, rows, dtype, device, count, eps, (0.5, 0.99), other)
    return DistortionReport("pairs", eps, worst, rmin, rmax, total / count, median, p99, count, zeros)


def _pair_quantiles(apply, points, rows, dtype, device, count, top, qs, other=None) -> list[float]:
    """Exact quantiles of |ratio - 1| over valid pairs, in two bounded passes.

    Pass 1 counts values in fixed bins over [0, top]; pass 2 keeps only the values in
    the bins that hold the wanted ranks and selects them exactly.
    """
    if top <= 0:
        return [0.0 for _ in qs]
    bins = _HISTOGRAM_BINS
    scale = bins / top

    def binned(ratios, valid):
        dev = (ratios[valid] - 1.0).abs()
        return dev, (dev * scale).long().clamp_(0, bins - 1)

    hist = torch.zeros(bins, dtype=torch.long)
    for _, _, ratios, valid, _ in _pair_blocks(apply, points, rows, dtype, device, other):
        _, idx = binned(ratios, valid)
        hist += torch.bincount(idx.cpu(), minlength=bins)
    cumulative = torch.cumsum(hist, 0)
    ranks = set()  # numpy's "linear": interpolate between ranks floor(q (N-1)) and the next
    for q in qs:
        pos = q * (count - 1)
        ranks.update({math.floor(pos), min(math.floor(pos) + 1, count - 1)})
    wanted = {r: int(torch.searchsorted(cumulative, torch.tensor(r), right=True)) for r in ranks}
    kept = {b: [] for b in set(wanted.values())}
    for _, _, ratios, valid, _ in _pair_blocks(apply, points, rows, dtype, device, other):
        dev, idx = binned(ratios, valid)
        for b in kept:
            sel = dev[idx == b]
            if sel.numel():
                kept[b].append(sel.cpu())
    values = {b: torch.sort(torch.cat(v)).values if v else torch.empty(0) for b, v in kept.items()}
    by_rank = {}
    for r, b in wanted.items():
        before = int(cumulative[b - 1]) if b > 0 else 0
        by_rank[r] = float(values[b][r - before])
    out = []
    for q in qs:
        pos = q * (count - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, count - 1)
        out.append(by_rank[lo] + (by_rank[hi] - by_rank[lo]) * (pos - lo))
    return out


@torch.no_grad()
def worst_pairs(linear_map, points, count: int, *, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``count`` pairs with the largest |ratio - 1|, exactly, over all pairs i < j.

    Returns index vectors (i, j) and their deviations, sorted worst first (fewer than
    ``count`` when there are fewer valid pairs). Zero-distance pairs are skipped.
    The active-set training strategy refreshes its hard pairs with this.
    """
    apply, d, device = as_linear_map(linear_map, dtype)
    n = _check_points(points, d)
    if n < 2:
        raise ValueError("pairs need at least 2 points")
    itemsize = torch.finfo(dtype).bits // 8
    probe_k = apply(torch.zeros(1, d, dtype=dtype, device=device)).shape[1]
    rows = block_rows(d, probe_k, itemsize, memory_budget)
    best_dev = torch.empty(0, dtype=dtype)
    best_i = torch.empty(0, dtype=torch.long)
    best_j = torch.empty(0, dtype=torch.long)
    for i0, j0, ratios, valid, _ in _pair_blocks(apply, points, rows, dtype, device):
        dev = torch.where(valid, (ratios - 1.0).abs(), torch.full_like(ratios, -1.0)).view(-1)
        top = torch.topk(dev, min(count, dev.numel()))
        keep = top.values >= 0
        width = ratios.shape[1]
        flat = top.indices[keep]
        best_dev = torch.cat([best_dev, top.values[keep].cpu()])
        best_i = torch.cat([best_i, (i0 + flat // width).cpu()])
        best_j = torch.cat([best_j, (j0 + flat % width).cpu()])
        if best_dev.numel() > count:
            order = torch.topk(best_dev, count).indices
            best_dev, best_i, best_j = best_dev[order], best_i[order], best_j[order]
    order = torch.argsort(best_dev, descending=True)
    return best_i[order], best_j[order], best_dev[order]


def heldout_reports(linear_map, train_points, heldout_points, *, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                    quantiles: bool = True) -> dict[str, DistortionReport]:
    """Exact reports on held-out data: ``points`` (their norms; left out if one is the zero
    vector), ``pairs`` (held-out x held-out; left out with fewer than 2 distinct points)
    and ``cross_pairs`` (train x held-out)."""
    kwargs = dict(memory_budget=memory_budget, quantiles=quantiles)
    val = np.asarray(heldout_points)
    reports = {}
    if (val ** 2).sum(1).min() > 0:
        reports["points"] = evaluate(linear_map, val, "norms", **kwargs)
    if len(val) >= 2:
        try:
            reports["pairs"] = evaluate(linear_map, val, "pairs", **kwargs)
        except ValueError:  # every held-out pair at distance zero
            pass
    reports["cross_pairs"] = evaluate(linear_map, train_points, "pairs", other=val, **kwargs)
    return reports


def norm_distortion(matrix, points, *, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                    dtype: torch.dtype = torch.float64, quantiles: bool = True, screen="auto") -> DistortionReport:
    """Exact distortion of ``matrix`` (k, d) on every row of ``points`` (n, d) (see :func:`evaluate`)."""
    return evaluate(matrix, points, "norms", memory_budget=memory_budget, dtype=dtype, quantiles=quantiles,
                    screen=screen)


def pair_distortion(linear_map, points, *, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                    dtype: torch.dtype = torch.float64, quantiles: bool = True, other=None) -> DistortionReport:
    """Exact distortion of ``linear_map`` over all pairs of rows of ``points``
    (or, with ``other``, over all pairs of a row of ``points`` and a row of ``other``)."""
    return evaluate(linear_map, points, "pairs", memory_budget=memory_budget, dtype=dtype,
                    quantiles=quantiles, other=other)


def max_distortion(matrix, points, mode: str = "norms", **kwargs) -> float:
    """Shorthand: the worst-case epsilon of ``matrix`` on ``points``."""
    return evaluate(matrix, points, mode, quantiles=False, **kwargs).epsilon
