"""The pairwise training loss: the worst pair of every sampled embedding, computed in the embedded space.

In pairs mode the sampler minimizes, for each sampled matrix A,

    max over pairs i < j of | ||A (x_i - x_j)||^2 / ||x_i - x_j||^2 - 1 |.

Difference vectors are never formed for all pairs. With Y = A X^T (one (k, n) matrix
per sample), ||y_i - y_j||^2 = ||y_i||^2 + ||y_j||^2 - 2 <y_i, y_j>, one Gram matrix
per sample. The original squared distances are computed once.

Two strategies (``model.pair_strategy``):

* ``exact``: every step scans all n(n-1)/2 pairs of every sample, without autograd and
  in cache-sized tiles, to find each sample's worst pair; the differentiable loss is then
  recomputed on those N pairs only. The value is the exact hard max and its gradient is
  the gradient of the max (autograd through ``amax`` would route it to the same pair),
  at a fraction of the memory. Feasible up to a few thousand points.
* ``active``: the loss is taken over an active set: the ``n_hard`` worst pairs of the
  deterministic M / sqrt(k), refreshed by an exact all-pairs pass every ``refresh_every``
  steps, plus ``n_random`` fresh uniformly random pairs every step. Cheap at any n.

Pairs at zero distance (duplicate points) are masked: they contribute nothing.
"""

from __future__ import annotations

import math

import torch

from jl_lightning.distortion import ZERO_DISTANCE_RTOL

PAIR_STRATEGIES = ("exact", "active")


TILE_BYTES = 4 * 2**20  # one tile of (samples x rows x columns) temporaries: cache-sized


def _tile_rows(n_samples: int, n: int, itemsize: int) -> int:
    """Rows per tile so that an (N, rows, n) block stays near ``TILE_BYTES`` (it then stays in cache:
    measured 5x faster on digits than whole (n x n) matrices per sample)."""
    return max(1, TILE_BYTES // (n_samples * n * itemsize))


class PairGeometry:
    """The original squared distances of all pairs, computed once (float64, then cast).

    ``inv_sq_dist[i, j]`` is 1 / ||x_i - x_j||^2 for a valid pair and 0 on the diagonal
    and for duplicate pairs; ``valid`` is 1.0 on valid pairs and 0.0 elsewhere, so that
    ``|dy * inv_sq_dist - valid|`` is the pair distortion on valid pairs and exactly 0 on
    the others.
    Only the exact strategy needs the table; the active strategy computes the distances
    of the pairs it uses on the fly (``inverse_sq_distances``).
    """

    @torch.no_grad()
    def __init__(self, points: torch.Tensor, memory_budget: int = 256 * 2**20):
        X = points.to(torch.float64)
        X = X - X.mean(0)
        sq = X.pow(2).sum(1)
        n = points.shape[0]
        inv = torch.empty(n, n, dtype=points.dtype, device=points.device)
        valid = torch.empty(n, n, dtype=points.dtype, device=points.device)
        rows = max(1, int(memory_budget // (3 * 8 * n)))
        for i0 in range(0, n, rows):
            blk = slice(i0, i0 + rows)
            scale = sq[blk, None] + sq[None, :]
            dx = scale - 2 * (X[blk] @ X.T)
            ok = dx > ZERO_DISTANCE_RTOL * scale
            ok[:, i0:i0 + rows].fill_diagonal_(False)
            inv[blk] = torch.where(ok, 1.0 / torch.where(ok, dx, torch.ones_like(dx)),
                                   torch.zeros_like(dx)).to(inv.dtype)
            valid[blk] = ok.to(valid.dtype)
        self.inv_sq_dist, self.valid = inv, valid


@torch.no_grad()
def worst_pairs_of_samples(embedded: torch.Tensor, geometry: PairGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """Index vectors (i, j), shape (N,), of the worst pair of each sample in ``embedded`` (N, k, n).

    A scan of the upper triangle of every sample, with no autograd graph, one cache-sized
    tile of rows at a time: memory stays at O(N n) whatever n is.
    """
    N, _, n = embedded.shape
    rows = _tile_rows(N, n, embedded.element_size())
    sq = embedded.pow(2).sum(1)  # (N, n)
    left = embedded.transpose(1, 2)
    best = torch.full((N,), -1.0, dtype=embedded.dtype, device=embedded.device)
    best_i = torch.zeros(N, dtype=torch.long, device=embedded.device)
    best_j = torch.zeros_like(best_i)
    for i0 in range(0, n, rows):
        i1 = min(i0 + rows, n)
        # dy = sq_i + sq_j - 2 <y_i, y_j> for rows i0:i1 and columns i0:, in one fused batched matmul
        dy = torch.baddbmm(sq[:, i0:i1, None] + sq[:, None, i0:], left[:, i0:i1], embedded[:, :, i0:],
                           alpha=-2.0)
        dev = dy.mul_(geometry.inv_sq_dist[i0:i1, i0:]).sub_(geometry.valid[i0:i1, i0:]).abs_()
        value, flat = dev.view(N, -1).max(1)
        better = value > best
        width = n - i0
        best = torch.where(better, value, best)
        best_i = torch.where(better, i0 + flat // width, best_i)
        best_j = torch.where(better, i0 + flat % width, best_j)
    return best_i, best_j


def inverse_sq_distances(differences: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(1 / ||d||^2 or 0, valid as 0/1) for difference vectors ``differences`` (P, d);
    ``scale`` is ||x_i||^2 + ||x_j||^2, against which a zero distance is judged."""
    dx = differences.pow(2).sum(1)
    ok = dx > ZERO_DISTANCE_RTOL * scale
    return torch.where(ok, 1.0 / torch.where(ok, dx, torch.ones_like(dx)), torch.zeros_like(dx)), ok.to(dx.dtype)


def active_pair_deviations(mean: torch.Tensor, sigma, noise: torch.Tensor | None, differences: torch.Tensor,
                           inv_sq_dist: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """|ratio - 1| of the pairs with difference vectors ``differences`` (P, d) under each
    sampled A = (M + sigma E_s) / sqrt(k): shape (N, P), or (1, P) when ``noise`` is None
    (the deterministic M / sqrt(k)).

    For the few thousand pairs of an active set, their P difference vectors are formed
    directly: P x d numbers, and the precise way to take a small distance.
    """
    embedded = mean @ differences.T  # (k, P)
    if noise is None:
        embedded = embedded.unsqueeze(0)
    else:
        embedded = embedded + sigma * (noise @ differences.T)  # (N, k, P)
    dy = embedded.pow(2).sum(1) / mean.shape[0]
    return (dy * inv_sq_dist - valid).abs()


def selected_pair_deviations(mean: torch.Tensor, sigma, noise: torch.Tensor | None, differences: torch.Tensor,
                             inv_sq_dist: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """|ratio - 1| of one pair per sample: ``differences`` (N, d) is sample s's pair in row s.
    Shape (N,). Differentiable; the hard max of the active strategy recomputes its
    argmax pairs with this, so the backward pass touches N pairs instead of N x P."""
    embedded = differences @ mean.T  # (N, k)
    if noise is not None:
        embedded = embedded + sigma * torch.einsum("skd,sd->sk", noise, differences)
    dy = embedded.pow(2).sum(1) / mean.shape[0]
    return (dy * inv_sq_dist - valid).abs()


def active_pair_loss(mean: torch.Tensor, sigma, noise: torch.Tensor | None, differences: torch.Tensor,
                     inv_sq_dist: torch.Tensor, valid: torch.Tensor, temperature: float | None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss term, hard max) per sample over the active pairs, shapes (N,).

    Hard max: the argmax pair of each sample is found without autograd, then recomputed
    differentiably (the same value and gradient as autograd through ``amax``).
    Smooth max: ``temperature * logsumexp(dev / temperature)`` over all active pairs.
    """
    if temperature is None:
        with torch.no_grad():
            worst = active_pair_deviations(mean, sigma, noise, differences, inv_sq_dist, valid).argmax(1)
        if noise is None:
            worst = worst[:1]
        hard = selected_pair_deviations(mean, sigma, noise, differences[worst], inv_sq_dist[worst], valid[worst])
        return hard, hard.detach()
    dev = active_pair_deviations(mean, sigma, noise, differences, inv_sq_dist, valid)
    return smooth_max(dev, temperature), dev.detach().amax(1)


def exact_pair_loss(embedded: torch.Tensor, geometry: PairGeometry) -> torch.Tensor:
    """The hard max over all pairs for each sample, shape (N,), differentiable."""
    i, j = worst_pairs_of_samples(embedded.detach(), geometry)
    rows = torch.arange(embedded.shape[0], device=embedded.device)
    diff = embedded[rows, :, i] - embedded[rows, :, j]  # (N, k): each sample's own worst pair
    return (diff.pow(2).sum(1) * geometry.inv_sq_dist[i, j] - geometry.valid[i, j]).abs()


class ActivePairs:
    """The active set: ``n_hard`` worst pairs (set by :meth:`refresh`) plus ``n_random`` fresh random pairs."""

    def __init__(self, n: int, n_hard: int, n_random: int):
        self.n, self.n_hard, self.n_random = n, n_hard, n_random
        self.hard_i = torch.empty(0, dtype=torch.long)
        self.hard_j = torch.empty(0, dtype=torch.long)

    def set_hard(self, i: torch.Tensor, j: torch.Tensor) -> None:
        self.hard_i, self.hard_j = i.long(), j.long()

    def draw(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Index vectors of this step's pairs: the hard set and fresh random pairs (i != j)."""
        i = torch.randint(0, self.n, (self.n_random,), device=device)
        # j uniform over the other n - 1 points
        j = (i + torch.randint(1, self.n, (self.n_random,), device=device)) % self.n
        hi, hj = self.hard_i.to(device), self.hard_j.to(device)
        return torch.cat([hi, i]), torch.cat([hj, j])


def smooth_max(dev: torch.Tensor, temperature: float) -> torch.Tensor:
    """temperature * logsumexp(dev / temperature) over the last axis: an upper bound of the
    max that tends to it as the temperature goes to 0 (at most temperature * log(m) above)."""
    return temperature * torch.logsumexp(dev / temperature, dim=-1)


def annealed_temperature(start: float, end: float, step: int, total: int) -> float:
    """Geometric annealing from ``start`` at step 0 to ``end`` at step ``total``."""
    if total <= 0 or step >= total:
        return end
    return start * math.exp(math.log(end / start) * step / total)
