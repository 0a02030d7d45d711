"""Distortion of a linear map on a set of points: the one place it is computed.

The distortion of A on x is the paper's squared-norm definition

    eps(A, x) = | ||A x||^2 / ||x||^2 - 1 |,

taken over every point (``mode="norms"``) or over every pair of points, with x = x_i - x_j
(``mode="pairs"``). A run's figure is the maximum. Everything here is exact: every point
or pair, never a sample, in float64 by default, tile by tile (``tiles.py``) so memory stays
within ``memory_budget`` bytes whatever n is.

:func:`evaluate` is the one public entry. Its options:

* several maps at once (a list): the tiles of the data are read once for all of them;
* ``quantiles``: the exact median and 99th percentile of |ratio - 1| (numpy's "linear"
  definition); for pairs from two bounded passes (a histogram, then the values in the
  bins that hold the wanted ranks);
* ``screen``: a float32 pass with a rigorous rounding bound, then a float64 recheck of
  every point or pair that could be an extreme (:func:`_screened_norms`, and for pairs
  ``pair_screen.py``, the pass that makes n = 10^5 points affordable);
* ``worst=K``: the K points or pairs with the largest |ratio - 1|, by a streaming top-K;
* ``heldout``: reports on held-out points, their pairs and the train x held-out pairs;
* ``histogram``: counts of the ratios in given bins;
* ``other`` (pairs): the pairs (row of ``points``, row of ``other``) instead of i < j;
* ``shard``: this process's share of the tiles only; :func:`merge_reports` joins the
  ranks' reports into the one the whole pass gives (the lightning layer gathers them).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch

from jl_lightning.core.pairs import DEFAULT_MEMORY_BUDGET, gamma32
from jl_lightning.core.sharding import SINGLE, Shard
from jl_lightning.metrics.pair_screen import screened_pairs
from jl_lightning.metrics.tiles import (
    as_linear_map,
    check_points,
    is_operator,
    pair_tile_rows,
    pair_tiles,
    point_tile_rows,
    point_tiles,
    to_tensor,
)
from jl_lightning.metrics.topk import TopK
from jl_lightning.sparse_rows import SparseRows, is_sparse

MODES = ("norms", "pairs")
SCREEN_AUTO_SIZE = 50_000_000  # n * d from which norms-mode evaluation is screened by default
# pairs from which pairs-mode evaluation is screened by default (n of about 5,800 points)
SCREEN_AUTO_PAIRS = 2**24
_SCREEN_TILE_ROWS = 4096  # rows per float32 tile of the screened pass (cache-sized for d ~ 1000)
_HISTOGRAM_BINS = 1 << 16


# The one name of each held-out figure, from summary.json's heldout_history to TensorBoard's
# hp/<name>, the sweep table, optimized_metric and jl-compare's columns (the scalar tags
# during training are shorter, ordered for the HParams table: lightning/contract.py).
HELDOUT_NAMES = {
    "points": "heldout_points_distortion",  # the held-out points' norms
    "pairs": "heldout_pairs_distortion",  # the pairs among held-out points
    "cross_pairs": "cross_pairs_distortion",  # the pairs (training point, held-out point)
}


def heldout_name(mode: str) -> str:
    """The held-out figure a run in ``mode`` is judged by on unseen data: its pairs in pairs
    mode, its points in norms mode."""
    return HELDOUT_NAMES["pairs" if mode == "pairs" else "points"]


@dataclass(frozen=True)
class DistortionReport:
    """Exact distortion of a linear map on n points, or on their pairs."""

    mode: str  # "norms" or "pairs"
    epsilon: float  # max |ratio - 1|
    worst_index: int | tuple[int, int]  # the point, or the pair (i, j) with i < j, attaining it
    min_ratio: float  # min ||A x||^2 / ||x||^2
    max_ratio: float
    mean_abs: float  # mean |ratio - 1| (NaN when not asked for)
    median_abs: float  # median |ratio - 1| (NaN without quantiles)
    p99_abs: float  # 99th percentile of |ratio - 1| (NaN without quantiles)
    count: int  # points, or pairs that entered the figures
    zero_distance_pairs: int = 0  # pairs skipped as duplicates (pairs mode)
    # with worst=K: (index arrays, deviations), worst first; i alone in norms mode
    worst: tuple | None = field(default=None, compare=False)
    # with heldout=...: {"points", "pairs", "cross_pairs"} -> DistortionReport (HELDOUT_NAMES)
    heldout: dict | None = field(default=None, compare=False)
    # with histogram=edges: counts of the ratios per bin
    histogram: np.ndarray | None = field(default=None, compare=False)
    # with candidates=C (pairs): (i, j, deviations, squared distances) of C worst pairs,
    # worst first, by the float32 screen at scale: pairs for training to watch, not a figure
    candidates: tuple | None = field(default=None, compare=False)

    @property
    def multiplicative(self) -> float:
        """sqrt(max ratio / min ratio): the scale-free distortion."""
        if self.min_ratio <= 0:
            return math.inf
        return math.sqrt(self.max_ratio / self.min_ratio)

    def to_dict(self) -> dict:
        """The scalar figures (for summary.json); the held-out reports as nested dicts."""
        out = {
            name: value
            for name, value in asdict(self).items()
            if name not in ("worst", "heldout", "histogram", "candidates")
        }
        out["multiplicative"] = self.multiplicative
        return out


class NonFiniteDistortion(ValueError):
    """A distortion ratio is NaN or Inf: the map or the points hold NaN or Inf (or overflow)."""


def _check_finite(lo: float, hi: float) -> None:
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise NonFiniteDistortion(
            "a distortion ratio is NaN or Inf: the matrix or the points hold NaN or Inf, or their products overflow"
        )


class _Accumulator:
    """Running figures of one map over the tiles."""

    def __init__(self, pairs: bool, worst: int, edges: torch.Tensor | None, mean: bool, distances: bool = False):
        self.eps, self.worst_index = -1.0, ((-1, -1) if pairs else -1)
        self.rmin, self.rmax, self.total, self.count, self.zeros = math.inf, -math.inf, 0.0, 0, 0
        self.k_worst, self.mean = worst, mean
        # with ``distances`` (pairs), each kept pair's 1 / squared distance, read off its tile:
        # an active set's candidates need them, and recomputing them costs a pass of its own
        self.distances = distances
        self.top = TopK(worst, torch.device("cpu"), extra=int(distances)) if worst else None
        self.edges = edges
        self.counts = None if edges is None else torch.zeros(len(edges) - 1, dtype=torch.long)

    def _bin(self, ratios: torch.Tensor) -> None:
        bins = len(self.edges) - 1
        idx = (torch.bucketize(ratios.cpu().to(torch.float64), self.edges, right=True) - 1).clamp_(0, bins - 1)
        self.counts.add_(torch.bincount(idx, minlength=bins))

    def _keep_worst(self, dev: torch.Tensor, i: torch.Tensor, j: torch.Tensor, inv: torch.Tensor | None = None) -> None:
        """The tile's K largest deviations into the streaming top-K (``metrics/topk.py``). Once K
        are kept, only the tile's values at or above the kept minimum can enter: they are
        found by one comparison, and ranked only if there are more than K of them (a top-K of
        a whole tile costs a sort when K is an active set's 2^21 candidates)."""
        if self.top.full:
            index = (dev >= self.top.floor).nonzero(as_tuple=True)[0]
            if len(index) > self.k_worst:
                index = index[torch.topk(dev[index], self.k_worst).indices]
        else:
            top = torch.topk(dev, min(self.k_worst, dev.numel()))
            index = top.indices[top.values >= 0]  # -1 marks a pair that does not count
        if len(index):
            extra = (inv[index].cpu().to(torch.float64),) if self.distances else ()
            self.top.push(dev[index].cpu().to(torch.float64), i[index].cpu(), j[index].cpu(), *extra)

    def add_points(self, start: int, ratios: torch.Tensor) -> None:
        lo, hi = (float(v) for v in torch.aminmax(ratios))
        _check_finite(lo, hi)
        self.rmin, self.rmax = min(self.rmin, lo), max(self.rmax, hi)
        self.count += len(ratios)
        if max(hi - 1.0, 1.0 - lo) > self.eps or self.mean or self.k_worst:
            dev = (ratios - 1.0).abs()
            i = int(dev.argmax())
            if float(dev[i]) > self.eps:
                self.eps, self.worst_index = float(dev[i]), start + i
            if self.mean:
                self.total += float(dev.sum())
            if self.k_worst:
                index = torch.arange(start, start + len(dev), device=dev.device)
                self._keep_worst(dev, index, index)
        if self.counts is not None:
            self._bin(ratios)

    def add_pairs(self, tile, m: int) -> None:
        self.zeros += tile.zeros
        if tile.count == 0:
            return
        r = tile.ratios(m)  # 1 (deviation 0) where a pair does not count
        self.count += tile.count
        if tile.all_valid:
            lo, hi = (float(v) for v in torch.aminmax(r))
        else:
            lo = float(r.masked_fill(~tile.valid, math.inf).min())
            hi = float(r.masked_fill(~tile.valid, -math.inf).max())
        _check_finite(lo, hi)
        self.rmin, self.rmax = min(self.rmin, lo), max(self.rmax, hi)
        if max(hi - 1.0, 1.0 - lo) > self.eps or self.mean or self.k_worst:
            dev = (r - 1.0).abs_()
            flat = int(dev.argmax())
            value = float(dev.view(-1)[flat])
            if value > self.eps:
                self.eps = value
                self.worst_index = (tile.i0 + flat // dev.shape[1], tile.j0 + flat % dev.shape[1])
            if self.mean:
                self.total += float(dev.sum())
            if self.k_worst:
                flat_dev = torch.where(tile.valid, dev, torch.full_like(dev, -1.0)).view(-1)
                width = dev.shape[1]
                index = torch.arange(flat_dev.numel(), device=dev.device)
                self._keep_worst(flat_dev, tile.i0 + index // width, tile.j0 + index % width, tile.inv.view(-1))
        if self.counts is not None:
            self._bin(r[tile.valid])

    def report(self, mode: str, quantiles: tuple[float, float]) -> DistortionReport:
        worst = candidates = None
        if self.k_worst:
            rows, cols, values, *inverse = self.top.sorted()
            worst = (rows, values) if mode == "norms" else (rows, cols, values)
            if self.distances:  # (i, j, deviation, squared distance), worst first
                candidates = (rows, cols, values, 1.0 / inverse[0])
        mean = self.total / self.count if self.mean and self.count else math.nan
        return DistortionReport(
            mode,
            self.eps,
            self.worst_index,
            self.rmin,
            self.rmax,
            mean,
            quantiles[0],
            quantiles[1],
            self.count,
            self.zeros,
            worst=worst,
            histogram=None if self.counts is None else self.counts.numpy(),
            candidates=candidates,
        )


@torch.no_grad()
def evaluate(
    linear_map,
    points,
    mode: str = "norms",
    *,
    quantiles: bool = True,
    mean_abs: bool = True,
    screen="auto",
    worst: int = 0,
    heldout=None,
    histogram=None,
    other=None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    dtype: torch.dtype = torch.float64,
    shard: Shard = SINGLE,
    candidates: int = 0,
):
    """Exact distortion of ``linear_map`` on ``points`` (n, d), over points or over pairs.

    ``linear_map`` is a (k, d) matrix (numpy or torch), an operator with ``apply(X)``
    mapping an (m, d) tensor to (m, k) and ``d``, or a list of these (then a list of
    reports comes back, from one pass over the data). ``quantiles=False`` skips the median
    and 99th percentile (NaN), which saves the second pass in pairs mode;
    ``mean_abs=False`` skips the mean (NaN), which saves a pass over each tile when only
    the extremes matter. ``screen``: a float32 pass with a float64 recheck of the extremes
    (``"auto"``: from a size on; :func:`_norms_pass`, :func:`_pairs_pass`). ``worst=K``:
    ``report.worst`` holds the K worst points (index, deviation) or pairs (i, j, deviation),
    worst first. ``heldout`` (held-out points): ``report.heldout`` holds the reports on their
    norms (left out if one is the zero vector), on their pairs (left out with fewer than 2
    distinct points) and on the train x held-out pairs. ``histogram`` (bin edges):
    ``report.histogram`` counts the ratios, values outside going to the first or last bin.
    ``other`` and ``candidates``: pairs mode only (:func:`_pairs_pass`).

    ``shard`` (rank r of P processes): only the tiles r, r + P, ... of the pass, so the
    report covers this rank's points or pairs (``count`` 0 and ``epsilon`` -1 when it has
    none); :func:`merge_reports` of all ranks' reports gives the whole pass's epsilon, worst
    index, worst K, extreme ratios, counts and mean. The median and p99 need every value in
    one place and are NaN; a pass whose every pair is at distance 0 is refused only
    after the merge.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if other is not None and mode != "pairs":
        raise ValueError("a second set of points (other=...) needs mode='pairs'")
    maps = list(linear_map) if isinstance(linear_map, (list, tuple)) else [linear_map]
    if not maps:
        return []
    edges = None if histogram is None else torch.as_tensor(np.asarray(histogram, dtype=np.float64))
    plan = _Pass.resolve(maps, points, dtype, memory_budget, shard, edges, quantiles and shard.single, mean_abs, worst)
    reports = _norms_pass(plan, screen) if mode == "norms" else _pairs_pass(plan, screen, other, candidates)
    return _finish(linear_map, reports, maps, points, heldout, plan.quantiles, memory_budget, shard)


@dataclass
class _Pass:
    """One evaluation's maps, points and options, as :func:`evaluate` resolved them."""

    maps: list
    applies: list
    points: object
    n: int
    d: int
    k: int
    dtype: torch.dtype
    device: torch.device
    memory_budget: int
    shard: Shard
    edges: torch.Tensor | None
    quantiles: bool
    mean_abs: bool
    worst: int

    @property
    def itemsize(self) -> int:
        return torch.finfo(self.dtype).bits // 8

    @classmethod
    def resolve(cls, maps, points, dtype, memory_budget, shard, edges, quantiles, mean_abs, worst) -> _Pass:
        """Each map as an apply function on ``dtype`` tensors, with the common d and device, and
        the points checked against d."""
        resolved = [as_linear_map(m, dtype) for m in maps]
        applies, d, device = [r[0] for r in resolved], resolved[0][1], resolved[0][2]
        if any(r[1] != d for r in resolved):
            raise ValueError("all maps must have the same input dimension d")
        n = check_points(points, d)
        k = max(_output_dim(m, apply, d, dtype, device) for m, apply in zip(maps, applies))
        return cls(
            maps, applies, points, n, d, k, dtype, device, memory_budget, shard, edges, quantiles, mean_abs, worst
        )


def _output_dim(linear_map, apply, d: int, dtype, device) -> int:
    """k of a map: a matrix's rows, an operator's ``k`` where it says it, else the width
    of its image of one zero point."""
    if not is_operator(linear_map):
        return int(linear_map.shape[0])
    k = getattr(linear_map, "k", None)
    return int(k) if k is not None else apply(torch.zeros(1, d, dtype=dtype, device=device)).shape[1]


def _norms_pass(plan: _Pass, screen) -> list:
    """The norms reports. ``screen`` (one dense float64 matrix on the CPU): ``"auto"`` screens
    in float32 when n * d >= ``SCREEN_AUTO_SIZE``; the epsilon, worst point and min/max ratio
    are then the float64 figures, the mean and quantiles float32-accurate."""
    if screen == "auto":
        screen = plan.n * plan.d >= SCREEN_AUTO_SIZE
    screen = screen and not is_sparse(plan.points)  # the screen holds a dense float32 copy
    one = len(plan.maps) == 1 and not is_operator(plan.maps[0])
    simple = one and not plan.worst and plan.edges is None and plan.shard.single
    if screen and simple and plan.dtype == torch.float64 and plan.device.type == "cpu":
        return [_screened_norms(plan.maps[0], plan.points, plan.n, plan.quantiles)]
    rows = point_tile_rows(plan.d, plan.k * len(plan.maps), plan.itemsize, plan.memory_budget)
    return _norm_reports(
        plan.applies,
        plan.points,
        plan.n,
        rows,
        plan.dtype,
        plan.device,
        plan.quantiles,
        plan.mean_abs,
        plan.worst,
        plan.edges,
        plan.shard,
    )


def _pairs_pass(plan: _Pass, screen, other, candidates: int) -> list:
    """The pairs reports. ``screen``: ``"auto"`` screens from ``SCREEN_AUTO_PAIRS`` pairs on; the
    epsilon, worst pair(s), min/max ratio and count are the float64 figures, and the mean,
    median and p99 are NaN (they would need every pair in float64; ``screen=False`` gives them).
    ``other``: the pairs are every (row of ``points``, row of ``other``), and ``worst_index``
    indexes (points, other). ``candidates=C``: ``report.candidates`` holds C of the worst pairs
    (i, j, deviation, squared distance), worst first, for an active set to watch: in a screened
    pass they are ranked by the float32 products alone and carry the float32 squared distances
    (no float64 recheck, so a pass keeps its cost for a large C), otherwise they are the exact
    C worst."""
    if other is not None:
        check_points(other, plan.d)
    elif plan.n < 2:
        raise ValueError("pairs mode needs at least 2 points")
    pairs = plan.n * len(other) if other is not None else plan.n * (plan.n - 1) // 2
    if screen == "auto":
        screen = pairs >= SCREEN_AUTO_PAIRS
    # the screen holds a dense float32 copy of the points: sparse rows go tile by tile in float64
    sparse = is_sparse(plan.points) or is_sparse(other)
    if sparse and pairs >= SCREEN_AUTO_PAIRS:
        # as at the screen's sizes, no median and p99: their second pass keeps the values of
        # the bins that hold those ranks, which can be most of the pairs
        plan = replace(plan, quantiles=False)
    screen = screen and not sparse
    if screen and plan.dtype == torch.float64 and plan.edges is None:
        screened = screened_pairs(
            plan.applies, plan.points, other, plan.worst, plan.memory_budget, plan.device, None, plan.shard, candidates
        )
        if screened is not None:
            return [_screened_report(figures, plan.shard) for figures in screened]
    # sparse row blocks are never dense: only the (b x b) temporaries count against the budget
    width = 0 if is_sparse(plan.points) or is_sparse(other) else plan.d
    rows = pair_tile_rows(width, plan.k, plan.itemsize, plan.memory_budget)
    reports = _pair_reports(
        plan.applies,
        plan.points,
        other,
        rows,
        plan.dtype,
        plan.device,
        plan.quantiles,
        plan.mean_abs,
        max(plan.worst, candidates),
        plan.edges,
        plan.shard,
        distances=bool(candidates),
    )
    if not candidates:
        return reports
    worst = plan.worst  # the exact top max(K, C): its head is the worst K
    return [replace(r, worst=tuple(c[:worst] for c in r.worst) if worst else None) for r in reports]


ALL_ZERO_PAIRS = "every pair of points is at distance zero: the pairs distortion is undefined"


def _pair_reports(
    applies, points, other, rows, dtype, device, quantiles, mean, worst, edges, shard=SINGLE, distances=False
):
    accs = [_Accumulator(True, worst, edges, mean, distances) for _ in applies]
    for tile in pair_tiles(points, applies, rows, dtype, device, other, shard):
        for m, acc in enumerate(accs):
            acc.add_pairs(tile, m)
    if accs[0].count == 0 and shard.single:
        raise ValueError(ALL_ZERO_PAIRS)
    reports = []
    for m, acc in enumerate(accs):
        qs = (math.nan, math.nan)
        if quantiles:
            qs = _pair_quantiles(applies[m], points, rows, dtype, device, acc.count, acc.eps, other)
        reports.append(acc.report("pairs", qs))
    return reports


def _finish(linear_map, reports, maps, points, heldout, quantiles, memory_budget, shard=SINGLE):
    if heldout is not None:
        reports = [
            _with_heldout(report, m, points, heldout, quantiles, memory_budget, shard)
            for report, m in zip(reports, maps)
        ]
    return reports if isinstance(linear_map, (list, tuple)) else reports[0]


def _screened_report(figures: dict, shard: Shard = SINGLE) -> DistortionReport:
    if figures["count"] == 0 and shard.single:
        raise ValueError(ALL_ZERO_PAIRS)
    if figures["count"]:
        _check_finite(figures["min_ratio"], figures["max_ratio"])
    return DistortionReport(
        "pairs",
        figures["epsilon"],
        figures["worst_index"],
        figures["min_ratio"],
        figures["max_ratio"],
        math.nan,
        math.nan,
        math.nan,
        figures["count"],
        figures["zeros"],
        worst=figures["worst"],
        candidates=figures.get("candidates"),
    )


def _norm_reports(
    applies, points, n, rows, dtype, device, quantiles, mean, worst, edges, shard=SINGLE
) -> list[DistortionReport]:
    accs = [_Accumulator(False, worst, edges, mean) for _ in applies]
    deviations = [np.empty(n) for _ in applies] if quantiles else None  # the exact median needs them all
    for start, X in point_tiles(points, rows, dtype, device, shard):
        nx = X.pow(2).sum(1)
        for m, apply in enumerate(applies):
            ratios = apply(X).pow(2).sum(1) / nx
            accs[m].add_points(start, ratios)
            if quantiles:
                deviations[m][start : start + len(X)] = (ratios - 1.0).abs().cpu().numpy()
    reports = []
    for m, acc in enumerate(accs):
        qs = (math.nan, math.nan)
        if quantiles:
            qs = tuple(float(v) for v in np.quantile(deviations[m], [0.5, 0.99]))
        reports.append(acc.report("norms", qs))
    return reports


def _with_heldout(
    report, linear_map, train_points, heldout_points, quantiles, memory_budget, shard=SINGLE
) -> DistortionReport:
    kwargs = dict(memory_budget=memory_budget, quantiles=quantiles, shard=shard)
    val = heldout_points if is_sparse(heldout_points) else np.asarray(heldout_points)
    held = {}
    if squared_row_norms(val).min() > 0:
        held["points"] = evaluate(linear_map, val, "norms", **kwargs)
    if len(val) >= 2:
        try:
            held["pairs"] = evaluate(linear_map, val, "pairs", **kwargs)
        except ValueError:  # every held-out pair at distance zero (merge_reports drops it when sharded)
            pass
    held["cross_pairs"] = evaluate(linear_map, train_points, "pairs", other=val, **kwargs)
    return replace(report, heldout=held)


def squared_row_norms(points) -> np.ndarray:
    """||x_i||^2 of every row, for dense or sparse rows (float64)."""
    if isinstance(points, SparseRows):
        return points.sq_norms()
    return (np.asarray(points, dtype=np.float64) ** 2).sum(1)


def merge_reports(parts: list[DistortionReport]) -> DistortionReport:
    """The report of a whole pass from the reports of its shards (``evaluate(..., shard=)``
    on every rank): the largest epsilon and its worst index, the K worst of all, the
    extreme ratios, the summed counts, the count-weighted mean, the summed histogram; the
    median and p99 are NaN. Held-out reports are merged the same way (held-out pairs are
    left out when every one is at distance zero). Raises ValueError when no pair counts."""
    parts = list(parts)
    count = sum(p.count for p in parts)
    if count == 0:
        raise ValueError(ALL_ZERO_PAIRS)
    counted = [p for p in parts if p.count]
    top = max(counted, key=lambda p: p.epsilon)
    _check_finite(min(p.min_ratio for p in counted), max(p.max_ratio for p in counted))

    def head(field_name: str, value_column: int):  # the K largest of all parts' K largest
        lists = [getattr(p, field_name) for p in counted]
        if not lists or any(v is None for v in lists):
            return None
        columns = [np.concatenate(c) for c in zip(*lists)]
        keep = max(len(getattr(p, field_name)[0]) for p in parts if getattr(p, field_name) is not None)
        order = np.argsort(-columns[value_column], kind="stable")[:keep]
        return tuple(c[order] for c in columns)

    worst = head("worst", -1)
    mean = sum(p.mean_abs * p.count for p in counted) / count
    histogram = None
    if all(p.histogram is not None for p in parts):
        histogram = np.sum([p.histogram for p in parts], axis=0)
    heldout = None
    if parts[0].heldout is not None:
        heldout = {}
        for name in parts[0].heldout:
            try:
                heldout[name] = merge_reports([p.heldout[name] for p in parts])
            except ValueError:
                if name != "pairs":
                    raise
    return DistortionReport(
        top.mode,
        top.epsilon,
        top.worst_index,
        min(p.min_ratio for p in counted),
        max(p.max_ratio for p in counted),
        mean,
        math.nan,
        math.nan,
        count,
        sum(p.zero_distance_pairs for p in parts),
        worst=worst,
        heldout=heldout,
        histogram=histogram,
        candidates=head("candidates", 2),
    )


@torch.no_grad()
def _screened_norms(matrix, points, n: int, quantiles: bool) -> DistortionReport:
    """Norms-mode report with float32 speed and the float64 answer for the extremes.

    Pass 1 computes every ratio in float32 (tiles of ``_SCREEN_TILE_ROWS`` rows) with a
    rigorous bound on its rounding error. With u = 2^-24 and gamma_m = m u / (1 - m u):
    each embedded coordinate is off by at most gamma_{d+2} ||a_r|| ||x|| (the standard
    dot-product bound with Cauchy-Schwarz, A rounded to float32 included), so ||Ax||^2 is
    off by at most (2 g F sqrt(r) + g^2 F^2) ||x||^2 with g = gamma_{d+2}, F = ||A||_F;
    the float32 norms add gamma_k and gamma_{d+3} relative errors. Pass 2 recomputes in
    float64 every point whose screened value could be the largest |ratio - 1|, the
    smallest or the largest ratio, so ``epsilon``, ``worst_index``, ``min_ratio`` and
    ``max_ratio`` are the float64 figures (up to float64 rounding). The mean, median and
    99th percentile come from the float32 pass (absolute error at most the bound).
    Memory: one tile plus 3 floats per point.
    """
    A64 = to_tensor(matrix, torch.float64)
    d = A64.shape[1]
    A32 = A64.to(torch.float32)
    fro = float(A64.norm())
    gamma = gamma32(d + 2)
    ratios = np.empty(n)
    for start, X in point_tiles(points, _SCREEN_TILE_ROWS, torch.float32, None):
        ny = torch.linalg.vector_norm(X @ A32.T, dim=1).double().square_()
        nx = torch.linalg.vector_norm(X, dim=1).double().square_()
        ratios[start : start + len(X)] = (ny / nx).numpy()
    k = A64.shape[0]
    gamma_k, gamma_x = gamma32(k + 3), gamma32(d + 3)
    product = (2 * gamma * fro * np.sqrt(ratios) + (gamma * fro) ** 2) * (1 + gamma_k)
    delta = 1.01 * (product + (gamma_k + gamma_x) * ratios) / (1 - gamma_x)
    dev = np.abs(ratios - 1.0)
    candidates = np.flatnonzero(
        (dev + delta >= (dev - delta).max())
        | (ratios - delta <= (ratios + delta).min())
        | (ratios + delta >= (ratios - delta).max())
    )
    picked = points[torch.from_numpy(candidates)] if isinstance(points, torch.Tensor) else points[candidates]
    X = to_tensor(picked, torch.float64)
    exact = ((X @ A64.T).pow(2).sum(1) / X.pow(2).sum(1)).numpy()
    exact_dev = np.abs(exact - 1.0)
    i = int(exact_dev.argmax())
    median = p99 = math.nan
    if quantiles:
        median, p99 = (float(v) for v in np.quantile(dev, [0.5, 0.99]))
    return DistortionReport(
        "norms",
        float(exact_dev[i]),
        int(candidates[i]),
        float(exact.min()),
        float(exact.max()),
        float(dev.mean()),
        median,
        p99,
        n,
    )


def _pair_quantiles(apply, points, rows, dtype, device, count, top, other=None, qs=(0.5, 0.99)) -> tuple:
    """Exact quantiles of |ratio - 1| over valid pairs, in two bounded passes.

    Pass 1 counts values in fixed bins over [0, top]; pass 2 keeps only the values in
    the bins that hold the wanted ranks and selects them exactly.
    """
    if top <= 0:
        return tuple(0.0 for _ in qs)
    bins = _HISTOGRAM_BINS
    scale = bins / top

    def binned(tile):
        dev = (tile.ratios(0)[tile.valid] - 1.0).abs()
        return dev, (dev * scale).long().clamp_(0, bins - 1)

    hist = torch.zeros(bins, dtype=torch.long)
    for tile in pair_tiles(points, [apply], rows, dtype, device, other):
        hist += torch.bincount(binned(tile)[1].cpu(), minlength=bins)
    cumulative = torch.cumsum(hist, 0)
    ranks = set()  # numpy's "linear": interpolate between ranks floor(q (N-1)) and the next
    for q in qs:
        pos = q * (count - 1)
        ranks.update({math.floor(pos), min(math.floor(pos) + 1, count - 1)})
    wanted = {r: int(torch.searchsorted(cumulative, torch.tensor(r), right=True)) for r in ranks}
    kept = {b: [] for b in set(wanted.values())}
    for tile in pair_tiles(points, [apply], rows, dtype, device, other):
        dev, idx = binned(tile)
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
    return tuple(out)


def ratio_sample(
    matrix, points, mode: str = "norms", count: int = 20000, seed: int = 0, chunk: int = 4096
) -> np.ndarray:
    """Squared-norm ratios ||A v||^2 / ||v||^2 of a seeded sample, for pictures (a histogram),
    never for a run's epsilon, which is always the exact max (:func:`evaluate`).

    ``v`` ranges over the points (``norms``; all of them when there are at most ``count``) or
    over differences x_i - x_j of distinct pairs (``pairs``; ``count`` pairs drawn uniformly
    with replacement, a pair with i == j redrawn as (i, i + 1)). Zero vectors are left out.
    Computed in float64, ``chunk`` vectors at a time.
    """
    A = torch.as_tensor(np.asarray(matrix), dtype=torch.float64)
    n = points.shape[0]
    gen = torch.Generator().manual_seed(int(seed))
    if mode == "norms":
        rows = torch.arange(n) if n <= count else torch.randint(0, n, (count,), generator=gen)
        pairs = None
    else:
        i = torch.randint(0, n, (count,), generator=gen)
        j = torch.randint(0, n, (count,), generator=gen)
        j = torch.where(i == j, (i + 1) % n, j)
        rows, pairs = i, j
    out = []
    for start in range(0, len(rows), chunk):
        v = to_tensor(points[rows[start : start + chunk].numpy()], torch.float64)
        if pairs is not None:
            v = v - to_tensor(points[pairs[start : start + chunk].numpy()], torch.float64)
        sq = (v * v).sum(1)
        keep = sq > 0
        out.append(((v[keep] @ A.T) ** 2).sum(1) / sq[keep])
    return torch.cat(out).numpy() if out else np.zeros(0)


def best_scale(report: DistortionReport) -> tuple[float, float]:
    """(s, epsilon of s A): the single matrix factor minimizing the worst-case epsilon.

    Scaling A by s scales every squared-norm ratio r by s^2. With every ratio in
    [r_min, r_max], s^2 = 2 / (r_min + r_max) gives
    epsilon = (r_max - r_min) / (r_max + r_min), and no s does better.
    """
    lo, hi = report.min_ratio, report.max_ratio
    if hi <= 0:
        raise ValueError("the map sends every vector to 0; no scale helps")
    return math.sqrt(2.0 / (lo + hi)), (hi - lo) / (hi + lo)
