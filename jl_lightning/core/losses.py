"""Every sampled loss the Gaussian sampler minimizes, in one place.

For each of N reparameterized samples A_s = (M + sigma E_s) / sqrt(k) (``sampling.py``) a
loss gives the max distortion over a set S,

    term_s = max over x in S of | ||A_s x||^2 / ||x||^2 - 1 |,

and the step minimizes mean_s term_s + lambda sigma^2 / 2 (the paper's Eq. 8, lambda = 1).
Which S, and which max, is chosen once when the module is built (:func:`make_loss`):

* :class:`NormsLoss`: S = the points (the paper);
* :class:`ExactPairsLoss`: S = all n(n-1)/2 pairs x_i - x_j. Each sample's worst pair is
  found by a tiled scan without autograd, then recomputed differentiably, which gives the
  value and gradient of the hard max at a fraction of the memory (a few thousand points);
* :class:`ActivePairsLoss`: S = an active set, the hard pairs of the deterministic
  M / sqrt(k) from the last exact pass plus fresh random pairs every step; the step cost
  does not depend on n. The module refreshes the hard pairs (``needs_refresh``, ``set_hard``).

and the max over S:

* :class:`HardMax`: max_x dev(x) (the paper);
* :class:`SmoothMax`: t log sum_x exp(dev(x) / t), an upper bound of the max that is at most
  t log |S| above it, with t annealed geometrically from ``start`` to ``end`` over the run.

With ``sigma`` None (sigma^2 frozen at 0) every sample equals M / sqrt(k): one deterministic
evaluation stands for all N.

With several processes (``prepare(points, shard)``, ``sharding.py``) the norms and active
pairs losses evaluate only this rank's share of S, and the max is formed over all ranks
with a differentiable collective, so every rank gets the single-process value. The exact
pairs strategy is computed whole on every rank (it is meant for a few thousand points).
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Mapping

import numpy as np
import torch

from jl_lightning.constraints import (
    NON_NEGATIVE_INT,
    POSITIVE_INT,
    Number,
    OneOf,
    Steps,
    check,
    check_params,
)
from jl_lightning.core.pairs import (
    DEFAULT_MEMORY_BUDGET,
    ActivePairs,
    PairGeometry,
    center,
    chunk_rows,
    far_apart,
    pair_sq_distances,
    random_pairs,
    worst_pairs_of_samples,
)
from jl_lightning.core.sampling import (
    draw_noise,
    resolve_sampling,
    row_images,
    rows_times,
    sample_embedded,
    sampled_sq_norms,
    span_factor,
)
from jl_lightning.core.sharding import SINGLE, Shard
from jl_lightning.errors import JLInputError
from jl_lightning.sparse_rows import SparseRows

MODES = ("norms", "pairs")
PAIR_STRATEGIES = ("exact", "active")
# smooth_temperature="auto" in pairs mode with the active strategy (chosen by measurement, docs/benchmarks.md)
PAIRS_SMOOTH_TEMPERATURE = 0.1


def ratio_distortion(embedded_sq: torch.Tensor, original_sq: torch.Tensor) -> torch.Tensor:
    """|embedded_sq / original_sq - 1|, elementwise (broadcasting)."""
    return (embedded_sq / original_sq - 1.0).abs()


def smooth_max(dev: torch.Tensor, temperature: float) -> torch.Tensor:
    """temperature * logsumexp(dev / temperature) over the last axis: an upper bound of the
    max that tends to it as the temperature goes to 0 (at most temperature * log(m) above)."""
    return temperature * torch.logsumexp(dev / temperature, dim=-1)


def annealed_temperature(start: float, end: float, step: int, total: int) -> float:
    """Geometric annealing from ``start`` at step 0 to ``end`` at step ``total``."""
    if total <= 0 or step >= total:
        return end
    return start * math.exp(math.log(end / start) * step / total)


# ------------------------------------------------------------------- the max
class HardMax:
    """max over the last axis (and over the ranks' shares)."""

    def temperature(self, step: int, total: int) -> float | None:
        return None

    def __call__(self, dev: torch.Tensor, step: int, total: int, shard: Shard = SINGLE) -> torch.Tensor:
        return shard.max(dev.amax(-1))


class SmoothMax:
    """Log-sum-exp max with a temperature annealed geometrically from ``start`` to ``end``."""

    def __init__(self, start: float, end: float):
        self.start, self.end = float(start), float(end)

    def temperature(self, step: int, total: int) -> float:
        return annealed_temperature(self.start, self.end, step, total)

    def __call__(self, dev: torch.Tensor, step: int, total: int, shard: Shard = SINGLE) -> torch.Tensor:
        t = self.temperature(step, total)
        if shard.single:
            return smooth_max(dev, t)
        return t * shard.logsumexp(torch.logsumexp(dev / t, dim=-1))


# ----------------------------------------------------------------- the sets
class DistortionLoss:
    """Base class. ``prepare(points, shard)`` once for a data tensor, then
    ``loss(mean, sigma, n_samples, step, total)`` every step -> (term, hard max), shapes (N,);
    both are the figures over all of S on every rank, whatever ``shard`` is."""

    maximum: HardMax | SmoothMax
    shard: Shard = SINGLE

    def prepare(self, points: torch.Tensor, shard: Shard = SINGLE) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """What a checkpoint keeps of the loss beyond its options (the active set's pairs)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass

    def __call__(
        self, mean: torch.Tensor, sigma: torch.Tensor | None, n_samples: int, step: int, total: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def needs_refresh(self, step: int) -> bool:
        """Whether the module should run an exact pass and :meth:`set_hard` before this step."""
        return False

    def _chunk(self, mean: torch.Tensor, noise: torch.Tensor | None) -> int:
        """Rows per chunk of ``core/sampling.row_images`` within the memory budget: dense rows
        count d columns, sparse rows only their images (N + 1) k (a sparse row is small)."""
        width = mean.shape[1]
        if isinstance(self.points, SparseRows):
            width = mean.shape[0] * (1 + (0 if noise is None else noise.shape[0]))
        return chunk_rows(width, mean.element_size(), DEFAULT_MEMORY_BUDGET)


class NormsLoss(DistortionLoss):
    """Max over the points of |ratio - 1| (the paper's objective)."""

    def __init__(self, maximum, sampling: str = "auto"):
        self.maximum, self.sampling = maximum, sampling
        self.points = self.sq_norms = self.factor = None

    def prepare(self, points: torch.Tensor, shard: Shard = SINGLE) -> None:
        if points.shape[0] < shard.world:
            raise JLInputError(f"{shard.world} processes need at least {shard.world} points, got {points.shape[0]}")
        self.shard = shard
        if isinstance(points, SparseRows):  # no span factor (it would be dense): chunks of rows
            self.points, self.factor = shard.take(points), None
            self.sq_norms = squared_norms(self.points)
            return
        mode = resolve_sampling(self.sampling, points.shape[0], points.shape[1])
        # the span factor of all points, then this rank's columns: the same noise Z gives
        # every rank its points' share of the one sample Z R
        factor = span_factor(points) if mode == "span" else None
        self.points = shard.take(points)
        self.sq_norms = self.points.pow(2).sum(1)
        self.factor = None if factor is None else shard.take(factor.T).T

    def __call__(self, mean, sigma, n_samples, step, total):
        if isinstance(self.points, SparseRows):
            noise = None if sigma is None else draw_noise(n_samples, mean.shape[0], mean.shape[1], mean, True)
            chunk = self._chunk(mean, noise)
            images, noisy = row_images(mean, noise, lambda a, b: self.points.matrix[a:b], len(self.points), chunk)
            embedded = images.unsqueeze(1) if noisy is None else images.unsqueeze(1) + sigma * noisy
            sq = embedded.pow(2).sum(-1).T / mean.shape[0]  # (N, n), with the 1 / sqrt(k) of A
        else:
            sq = sample_embedded(mean, sigma, n_samples, self.points, self.factor).pow(2).sum(1)
        dev = ratio_distortion(sq, self.sq_norms)
        hard = self.shard.max(dev.amax(-1))
        term = hard if isinstance(self.maximum, HardMax) else self.maximum(dev, step, total, self.shard)
        return term, hard.detach()


class ExactPairsLoss(DistortionLoss):
    """Hard max over all pairs, every step (the original distances tabulated once)."""

    maximum = HardMax()

    def __init__(self, sampling: str = "auto"):
        self.sampling = sampling
        self.points = self.factor = self.geometry = None

    def prepare(self, points: torch.Tensor, shard: Shard = SINGLE) -> None:
        if isinstance(points, SparseRows):
            raise JLInputError(
                "model.loss.pair_strategy=exact tabulates all n^2 pairs of dense points; sparse rows "
                "train with pair_strategy=active (the default)"
            )
        # computed whole on every rank: each gets the same loss and gradient (no collective)
        self.points = center(points)
        self.geometry = PairGeometry(self.points)
        mode = resolve_sampling(self.sampling, points.shape[0], points.shape[1])
        self.factor = span_factor(self.points) if mode == "span" else None

    def __call__(self, mean, sigma, n_samples, step, total):
        embedded = sample_embedded(mean, sigma, n_samples, self.points, self.factor)
        i, j = worst_pairs_of_samples(embedded.detach(), self.geometry)
        rows = torch.arange(embedded.shape[0], device=embedded.device)
        diff = embedded[rows, :, i] - embedded[rows, :, j]  # (N, k): each sample's own worst pair
        g = self.geometry
        hard = (diff.pow(2).sum(1) * g.inv_sq_dist[i, j] - g.valid[i, j]).abs()
        return hard, hard.detach()


class ActivePairsLoss(DistortionLoss):
    """Max over the active set: hard pairs from the last exact pass (with ``memory``, also
    earlier passes' hard pairs) plus random pairs. The hard pairs' difference vectors are
    formed once per pass, so a step gathers only the random pairs.

    With ``candidates`` C > 0 an exact pass also hands over C of its worst pairs
    (:meth:`set_candidates`; ranked by the pass's float32 screen), and every
    ``rescan_every`` steps between passes they are scored again under the current M: the
    hard pairs become the ``n_hard`` worst of them. A rescan costs one
    product of the points with M (n k d) and C gathers of k numbers, so at large n the hard
    set follows M between passes that each cost minutes; the exact passes still decide
    which pairs are candidates, and certify the result.

    Exact passes run at step 0, on the schedule of ``refresh_every`` and ``refresh_growth``
    (:func:`is_refresh_step`), and at every step in ``refresh_extra``: late passes where the
    schedule's gaps have grown long, so that the last hard pairs are those of an M close to
    the final one. ``refresh_every=None``: no schedule, ``refresh_extra`` lists every pass
    after step 0.
    """

    def __init__(
        self,
        *,
        maximum,
        n_hard: int,
        n_random: int,
        refresh_every: int | None,
        refresh_growth: float,
        memory: int,
        candidates: int,
        rescan_every: int,
        refresh_extra,
    ):
        self.maximum = maximum
        self.n_hard, self.n_random, self.refresh_every = n_hard, n_random, refresh_every
        self.refresh_growth, self.memory = refresh_growth, memory
        self.refresh_extra = frozenset(refresh_extra)
        self.n_candidates, self.rescan_every = candidates, rescan_every
        self.points = self.sq_norms = self.active = self.hard = self.candidates = self.geometry = None
        self.refreshed = False
        self._pending: dict | None = None  # a checkpoint's state, applied once the points are prepared

    def state_dict(self) -> dict:
        """The active set as a checkpoint keeps it: the hard pairs of the last exact pass and the
        candidates, once a pass has run (else empty)."""
        if self.active is None or not self.refreshed:
            return {}
        state = {"hard": (self.active.hard_i.clone(), self.active.hard_j.clone())}
        if self.candidates is not None:
            state["candidates"] = tuple(t.cpu().clone() for t in self.candidates[:3])
        return state

    def load_state_dict(self, state: dict) -> None:
        """Continue with a checkpoint's active set: it counts as refreshed, so a resumed run does
        not run an exact pass the uninterrupted one did not run (applied when the points are
        prepared, at once if they are)."""
        self._pending = dict(state) if state else None
        if self._pending and self.points is not None:
            self._apply_pending()

    def _apply_pending(self) -> None:
        state, self._pending = self._pending, None
        self.set_hard(*state["hard"])
        if "candidates" in state:
            self.set_candidates(*state["candidates"])

    def prepare(self, points: torch.Tensor, shard: Shard = SINGLE) -> None:
        if self.n_random < shard.world:
            raise JLInputError(
                f"{shard.world} processes need model.loss.active_random >= {shard.world}, got {self.n_random}"
            )
        self.shard = shard
        # sparse rows stay uncentered (centering would densify them): distances do not change,
        # and pairs' squared distances come from explicit differences, not from norms
        self.points = points if isinstance(points, SparseRows) else center(points)
        self.sq_norms = squared_norms(self.points)
        # few dense points: every pair's 1 / squared distance tabulated once (float64, then
        # cast), so a step's fresh random pairs are two lookups instead of 2 P d reads
        n = len(self.points)
        tables = 2 * n * n * self.sq_norms.element_size()
        small = not isinstance(self.points, SparseRows) and tables <= DEFAULT_MEMORY_BUDGET
        self.geometry = PairGeometry(self.points) if small else None
        self.active = ActivePairs(points.shape[0], self.n_hard, self.n_random, self.memory)
        self.hard = self._pairs(torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long))
        self.candidates = None
        self.refreshed = False
        if self._pending:
            self._apply_pending()

    def needs_refresh(self, step: int) -> bool:
        return (
            not self.refreshed
            or step in self.refresh_extra
            or (self.refresh_every is not None and is_refresh_step(step, self.refresh_every, self.refresh_growth))
        )

    def needs_rescan(self, step: int) -> bool:
        """Whether the candidates are scored again at ``step`` (the module runs an exact pass
        instead where one is due at the same step)."""
        return self.candidates is not None and step % self.rescan_every == 0

    def set_hard(self, i, j) -> None:
        """The hard pairs (index vectors into the prepared points), from an exact pass."""
        self.active.set_hard(i, j)
        self.hard = self._pairs(*self.shard.take(self.active.hard_i, self.active.hard_j))
        self.refreshed = True

    @torch.no_grad()
    def start_at_ties(self, seed: int = 0) -> None:
        """The active set while M = 0, where every pair ties at deviation 1 and an exact pass
        would report only ties: ``n_hard`` random pairs, and with candidates C random pairs
        (pairs at distance 0 left out) that the rescans rank as M grows, the first ``n_hard``
        of them the hard pairs. One seeded draw, the same on every rank."""
        integers = np.random.default_rng(seed).integers
        n = len(self.points)
        if not self.n_candidates:
            self.set_hard(*random_pairs(n, self.n_hard, integers))
            return
        i, j = (torch.from_numpy(a) for a in random_pairs(n, self.n_candidates, integers))
        sq = pair_sq_distances(self.points, i, j, dtype=self.sq_norms.dtype)
        device = self.sq_norms.device
        keep = far_apart(sq, (self.sq_norms[i.to(device)] + self.sq_norms[j.to(device)]).cpu())
        i, j, sq = i[keep], j[keep], sq[keep]
        self.set_candidates(i, j, sq)
        self.set_hard(i[: self.n_hard], j[: self.n_hard])

    @torch.no_grad()
    def set_candidates(self, i, j, sq_distances) -> None:
        """The pairs (index vectors) that :meth:`rescan` chooses the hard pairs from, with
        their squared distances (the exact pass's float32 ones), all nonzero."""
        i, j = torch.as_tensor(i).long(), torch.as_tensor(j).long()
        # rows gathered in order: a rescan reads the images in sequence (stable, so that the
        # candidates restored from a checkpoint keep their order)
        order = torch.argsort(i, stable=True)
        device = self.sq_norms.device
        sq_distances = torch.as_tensor(sq_distances).to(self.sq_norms.dtype)[order].to(device)
        self.candidates = (i[order].to(device), j[order].to(device), sq_distances, 1.0 / sq_distances)

    @torch.no_grad()
    def rescan(self, mean: torch.Tensor) -> None:
        """The ``n_hard`` worst candidates under the deterministic M / sqrt(k) become the hard pairs."""
        i, j, _, inverse = self.candidates
        images = all_images(self.points, mean.detach().to(self.sq_norms.dtype))
        dev = torch.empty_like(inverse)
        chunk = chunk_rows(images.shape[1], images.element_size(), DEFAULT_MEMORY_BUDGET)
        for s in range(0, len(i), chunk):
            d = torch.index_select(images, 0, i[s : s + chunk])
            d.sub_(torch.index_select(images, 0, j[s : s + chunk]))
            # | ||M (x_i - x_j)||^2 / k / ||x_i - x_j||^2 - 1 |
            scale = inverse[s : s + chunk] / mean.shape[0]
            dev[s : s + chunk] = d.pow_(2).sum(1).mul_(scale).sub_(1).abs_()
        top = torch.topk(dev, min(self.n_hard, len(dev))).indices
        self.set_hard(i[top].cpu(), j[top].cpu())

    def _pairs(self, i: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(i, j, 1 / squared distances or 0, valid, difference vectors or None) of the pairs.
        Where the active set's difference vectors fit the memory budget (:meth:`dense`), they
        are formed here, once per pass for the hard pairs, and the distances come from them;
        otherwise the distances come from the pairs' rows in budget-sized chunks and the
        vectors are never formed."""
        device = self.sq_norms.device
        i, j = i.to(device), j.to(device)
        differences = None
        if self.dense:
            differences = self.points[i] - self.points[j]
        if self.geometry is not None:
            return i, j, self.geometry.inv_sq_dist[i, j], self.geometry.valid[i, j], differences
        if differences is not None:
            sq = differences.pow(2).sum(1)
        else:
            sq = pair_sq_distances(self.points, i, j, dtype=self.sq_norms.dtype).to(device)
        ok = far_apart(sq, self.sq_norms[i] + self.sq_norms[j])
        inv = torch.where(ok, 1.0 / torch.where(ok, sq, torch.ones_like(sq)), torch.zeros_like(sq))
        return i, j, inv, ok.to(sq.dtype), differences

    @property
    def dense(self) -> bool:
        """Whether the active set's (pairs x d) difference vectors are held between steps: where
        they are the cheaper product (more points than pairs: the pairs' distinct points would
        be more rows) and fit the memory budget (dense points of moderate d; never sparse rows)."""
        if isinstance(self.points, SparseRows):
            return False
        pairs = self.n_hard + self.memory + self.n_random
        fits = 3 * pairs * self.points.shape[1] * self.points.element_size() <= DEFAULT_MEMORY_BUDGET
        return fits and len(self.points) > pairs

    def _rows(self, index: torch.Tensor):
        """Rows of the prepared points: a dense tensor, or a scipy.sparse chunk for sparse rows."""
        if isinstance(self.points, SparseRows):
            return self.points.matrix[index.cpu().numpy()]
        return self.points[index]

    def pair_sq_images(self, mean, sigma, noise, pairs) -> torch.Tensor:
        """||(M + sigma E_s)(x_i - x_j)||^2 for every pair and sample s, shape (N or 1, P),
        without the 1 / k. With the difference vectors at hand (:meth:`dense`), one product;
        otherwise whichever is fewer is multiplied, the distinct points of the pairs (then
        their images are subtracted) or the pairs' difference vectors, fetched a chunk at a
        time within the memory budget (``core/sampling.row_images``)."""
        i, j, _, _, differences = pairs
        count = len(i)
        first = second = None
        if differences is not None:
            images, noisy = row_images(mean, noise, lambda a, b: differences[a:b], count, count)
        else:
            chunk = self._chunk(mean, noise)
            distinct, inverse = torch.unique(torch.cat([i, j]), return_inverse=True)
            n = len(self.points)
            if 2 * len(distinct) > n and n < count:
                # most points are in a pair: every point, read as contiguous slices (views of
                # dense rows, row ranges of sparse ones), costs less than gathering the distinct ones
                sparse = isinstance(self.points, SparseRows)
                fetch = (lambda a, b: self.points.matrix[a:b]) if sparse else (lambda a, b: self.points[a:b])
                images, noisy = row_images(mean, noise, fetch, n, chunk)
                first, second = i, j
            elif len(distinct) < count:
                fetch = lambda a, b: self._rows(distinct[a:b])  # noqa: E731
                images, noisy = row_images(mean, noise, fetch, len(distinct), chunk)
                first, second = inverse[:count], inverse[count:]
            else:
                images, noisy = row_images(
                    mean, noise, lambda a, b: self._rows(i[a:b]) - self._rows(j[a:b]), count, chunk
                )
        if noisy is not None:
            return sampled_sq_norms(images, noisy, sigma, first, second).T
        if first is not None:
            # index_select: its gradient is an index_add, deterministic on CPU threads where
            # indexing's (an accumulating index_put) is not
            images = images.index_select(0, first) - images.index_select(0, second)
        return images.pow(2).sum(1).unsqueeze(0)

    def __call__(self, mean, sigma, n_samples, step, total):
        # every rank draws all the random pairs (the same RNG stream) and keeps its share
        fresh = self._pairs(*self.shard.take(*self.active.draw_random(self.sq_norms.device)))
        pairs = tuple(None if new is None else torch.cat([hard, new]) for hard, new in zip(self.hard, fresh))
        inv, valid = pairs[2], pairs[3]
        sparse = isinstance(self.points, SparseRows)
        noise = None if sigma is None else draw_noise(n_samples, mean.shape[0], mean.shape[1], mean, sparse)
        # | ||A_s (x_i - x_j)||^2 / ||x_i - x_j||^2 - 1 | for every sample and pair: (N, P)
        embedded_sq = self.pair_sq_images(mean, sigma, noise, pairs)
        dev = (embedded_sq / mean.shape[0] * inv - valid).abs()
        if isinstance(self.maximum, HardMax):
            hard = self.shard.max(dev.amax(1))
            return hard, hard.detach()
        return self.maximum(dev, step, total, self.shard), self.shard.max(dev.detach().amax(1))


def squared_norms(points) -> torch.Tensor:
    """||x_i||^2 of every row: of a tensor in its dtype and device, of sparse rows as float32."""
    if isinstance(points, SparseRows):
        return torch.from_numpy(points.sq_norms()).to(torch.float32)
    return points.pow(2).sum(1)


def all_images(points, mean: torch.Tensor) -> torch.Tensor:
    """X M^T for all points (n, k): one product, a sparse one for sparse rows."""
    if isinstance(points, SparseRows):
        return rows_times(points.matrix, mean)
    return points @ mean.T


def is_refresh_step(step: int, every: int, growth: float) -> bool:
    """Whether ``step`` is in the refresh schedule 0, r_1, r_2, ... with gaps
    round(every * growth^t): every ``every`` steps when growth is 1, and ever more rarely
    after that when it is above 1 (an exact pass is the cost of a step at large n, and
    the worst pairs change fastest early in a fit)."""
    if growth == 1.0:
        return step % every == 0
    at, t = 0, 0
    while at < step:
        at += max(1, round(every * growth**t))
        t += 1
    return at == step


# what make_loss accepts (model.* options), checked in one place (constraints.py)
LOSS_CONSTRAINTS = {
    "pair_strategy": OneOf(PAIR_STRATEGIES),
    "active_hard": POSITIVE_INT,
    "active_random": POSITIVE_INT,
    "active_refresh": Number(low=1, integer=True, none=True),
    "active_refresh_growth": Number(low=1),
    "active_memory": NON_NEGATIVE_INT,
    "active_candidates": NON_NEGATIVE_INT,
    "active_rescan": POSITIVE_INT,
    "active_refresh_extra": Steps(),
}
TEMPERATURE = Number(low=0, low_open=True, what="a number > 0 (or null for the hard max)")


def loss_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The loss's options (the ``model.loss`` node) by name, for ``make_loss(mode=...,
    **loss_options(...))``; an unknown one is refused with the accepted names."""
    unknown = sorted(set(options) - set(LOSS_PARAMETERS))
    if unknown:
        raise JLInputError(f"model.loss: unknown option(s) {unknown}; the loss takes {sorted(LOSS_PARAMETERS)}")
    missing = sorted(set(LOSS_PARAMETERS) - set(options))
    if missing:
        raise JLInputError(f"model.loss: missing {missing} (conf/model/sampler.yaml states every one)")
    return {name: options[name] for name in LOSS_PARAMETERS}


def starting_temperature(smooth_temperature, mode: str, pair_strategy: str):
    """``model.loss.smooth_temperature`` with ``auto`` resolved: the smooth max from
    temperature 0.1 in pairs mode with the active strategy, the hard max (None) otherwise."""
    if smooth_temperature != "auto":
        return smooth_temperature
    return PAIRS_SMOOTH_TEMPERATURE if mode == "pairs" and pair_strategy == "active" else None


def make_loss(
    *,
    mode: str,
    pair_strategy: str,
    smooth_temperature,
    smooth_temperature_end: float,
    active_hard: int,
    active_random: int,
    active_refresh: int | None,
    sampling: str,
    active_refresh_growth: float,
    active_memory: int,
    active_candidates: int,
    active_rescan: int,
    active_refresh_extra,
) -> DistortionLoss:
    """The loss for the sampler's options (``model.*``; their defaults are conf/model/sampler.yaml's),
    validated, with ``auto`` resolved: the smooth max at temperature 0.1 in pairs mode with the
    active strategy, the hard max otherwise."""
    check("model.mode", mode, OneOf(MODES))
    options = check_params(locals(), LOSS_CONSTRAINTS, "model.loss.")
    resolve_sampling(sampling, 1, 1)  # validates the name early
    smooth_temperature = starting_temperature(smooth_temperature, mode, pair_strategy)
    maximum = HardMax()
    if smooth_temperature is not None:
        check("model.loss.smooth_temperature", smooth_temperature, TEMPERATURE)
        check("model.loss.smooth_temperature_end", smooth_temperature_end, TEMPERATURE)
        if mode == "pairs" and pair_strategy == "exact":
            raise JLInputError(
                "model.loss.smooth_temperature needs model.loss.pair_strategy=active in pairs mode: "
                "the exact strategy differentiates each sample's worst pair only"
            )
        maximum = SmoothMax(smooth_temperature, smooth_temperature_end)
    if mode == "norms":
        return NormsLoss(maximum, sampling)
    if pair_strategy == "exact":
        return ExactPairsLoss(sampling)
    return ActivePairsLoss(
        maximum=maximum,
        n_hard=options["active_hard"],
        n_random=options["active_random"],
        refresh_every=options["active_refresh"],
        refresh_growth=float(options["active_refresh_growth"]),
        memory=options["active_memory"],
        candidates=options["active_candidates"],
        rescan_every=options["active_rescan"],
        refresh_extra=options["active_refresh_extra"],
    )


LOSS_PARAMETERS = tuple(name for name in inspect.signature(make_loss).parameters if name != "mode")
