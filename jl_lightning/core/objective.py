"""The whole objective the Gaussian sampler minimizes, in one object (the paper's Eq. 8):

    loss = mean over N sampled A of  max_{x in S} | ||A x||^2 / ||x||^2 - 1 |
           + lambda sigma^2 / 2
           + subspace_penalty * ||(M / sqrt(k)) Q||_F^2        (0 unless configured)

The max over S is the loss object's (``losses.py``); the regularizer and the penalty are
added here, so the Lightning module only steps the optimizer. Q = I - U_r U_r^T projects off
the principal directions U_r of the training points that hold ``subspace_energy`` of their
variance (kept as U_r, d x r, never as the d x d Q): the penalty keeps the map's gain small
outside the directions the data spans, where the max-distortion term never constrains it
and a new vector's component would be amplified instead of damped.
"""

from __future__ import annotations

import numpy as np
import torch

from jl_lightning.core.losses import DistortionLoss
from jl_lightning.core.sharding import SINGLE, Shard
from jl_lightning.sparse_rows import SparseRows


@torch.no_grad()
def principal_directions(points: torch.Tensor, energy: float) -> torch.Tensor | None:
    """U_r (d x r, float64, orthonormal columns): the fewest principal directions of the
    centered ``points`` that hold ``energy`` of their variance; None when the points do not
    vary at all (every direction is then in the complement's kernel, and the penalty is 0).

    The eigenproblem is the smaller of the two Gram matrices: X^T X (d x d) when n >= d, and
    X X^T (n x n) when n < d, whose eigenvectors v give the directions X^T v / sqrt(lambda).
    Both have the same nonzero eigenvalues, so the cut is the same; the cost is
    min(n, d)^3 and nothing of size d x d is formed for wide data."""
    n, d = points.shape
    wide = n < d
    gram, transposed_times = _centered_gram(points, wide)
    values, vectors = torch.linalg.eigh(gram)
    values, vectors = values.flip(0).clamp_min(0), vectors.flip(1)
    total = float(values.sum())
    if total == 0:
        return None
    kept = min(int((torch.cumsum(values, 0) < energy * total).sum()) + 1, values.numel())
    values, vectors = values[:kept], vectors[:, :kept]
    if not wide:
        return vectors
    # directions with a zero eigenvalue have no image under X^T; the energy cut keeps
    # them only through rounding, and they carry no variance
    keep = values > values[0] * torch.finfo(torch.float64).eps * max(n, d)
    directions = transposed_times(vectors[:, keep] / values[keep].sqrt())
    return torch.linalg.qr(directions, mode="reduced").Q  # orthonormal to rounding


def _centered_gram(points, wide: bool):
    """(the centered points' Gram matrix, X_c X_c^T when ``wide`` else X_c^T X_c, float64;
    V -> X_c^T V). Sparse rows are centered implicitly (X_c = X - 1 mu^T) with sparse
    products: nothing of size n x d is formed."""
    if not isinstance(points, SparseRows):
        X = points.double()
        X = X - X.mean(0)
        return (X @ X.T if wide else X.T @ X), (lambda V: X.T @ V)
    X = points.matrix.astype(np.float64)
    mu = np.asarray(X.mean(axis=0)).ravel()
    if wide:  # X X^T - X mu 1^T - 1 (X mu)^T + mu.mu
        x_mu = X @ mu
        gram = (X @ X.T).toarray() - x_mu[:, None] - x_mu[None, :] + mu @ mu
    else:  # X^T X - n mu mu^T
        gram = (X.T @ X).toarray() - X.shape[0] * np.outer(mu, mu)

    def transposed_times(V: torch.Tensor) -> torch.Tensor:
        V = V.numpy()
        return torch.from_numpy(np.asarray(X.T @ V - np.outer(mu, V.sum(0))))

    return torch.from_numpy(gram), transposed_times


def off_subspace(mean: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
    """M Q for Q = I - U U^T, as M - (M U) U^T: k d r operations, nothing of size d x d."""
    return mean - (mean @ directions) @ directions.T


class SamplerObjective:
    """The loss term over S, lambda sigma^2 / 2 and the subspace penalty, for M and sigma^2.
    ``prepare(points, shard)`` once per data tensor; ``state_dict`` / ``load_state_dict`` carry
    the loss's state (the active set) through a checkpoint."""

    def __init__(self, *, loss: DistortionLoss, reg_weight: float, subspace_penalty: float, subspace_energy: float):
        self.loss, self.reg_weight = loss, float(reg_weight)
        self.subspace_penalty, self.subspace_energy = float(subspace_penalty), float(subspace_energy)
        self.directions: torch.Tensor | None = None

    def prepare(self, points: torch.Tensor, shard: Shard = SINGLE, dtype: torch.dtype = torch.float32) -> None:
        self.loss.prepare(points, shard)
        if self.subspace_penalty:
            directions = principal_directions(points, self.subspace_energy)
            self.directions = None if directions is None else directions.to(dtype)

    def __call__(self, mean: torch.Tensor, variance, n_samples: int, step: int, total_steps: int):
        """(loss, mean sampled max distortion, sigma^2) at M = ``mean`` and ``variance``'s sigma^2."""
        s2 = variance.value()
        sigma = None if variance.is_frozen else variance.sigma(s2)
        term, hard = self.loss(mean, sigma, n_samples, step, total_steps)
        loss = term.mean() + self.reg_weight * s2 / 2
        if self.directions is not None:
            loss = loss + self.subspace_penalty * off_subspace(mean, self.directions).pow(2).sum() / mean.shape[0]
        return loss, hard.detach().mean(), s2

    def state_dict(self) -> dict:
        return {"loss": self.loss.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.loss.load_state_dict(state.get("loss") or {})
