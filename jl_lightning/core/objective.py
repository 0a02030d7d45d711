"""The whole objective the Gaussian sampler minimizes, in one object (the paper's Eq. 8):

    loss = mean over N sampled A of  max_{x in S} | ||A x||^2 / ||x||^2 - 1 |
           + lambda sigma^2 / 2
           + subspace_penalty * ||(M / sqrt(k)) Q||_F^2        (0 unless configured)

The max over S is the loss object's (``losses.py``); the regularizer and the penalty are
added here, so the Lightning module only steps the optimizer. Q = I - U_r U_r^T projects off
the principal directions U_r of the training points that hold ``subspace_energy`` of their
variance: the penalty keeps the map's gain small outside the directions the data spans,
where the max-distortion term never constrains it and a new vector's component would be
amplified instead of damped.
"""

from __future__ import annotations

import torch

from jl_lightning.core.losses import DistortionLoss
from jl_lightning.core.sharding import SINGLE, Shard


@torch.no_grad()
def principal_complement(points: torch.Tensor, energy: float) -> torch.Tensor:
    """Q = I - U_r U_r^T (d x d, float64) for U_r the fewest principal directions of the
    centered ``points`` that hold ``energy`` of their variance."""
    X = points.double()
    X = X - X.mean(0)
    values, vectors = torch.linalg.eigh(X.T @ X)
    values, vectors = values.flip(0).clamp_min(0), vectors.flip(1)
    total = float(values.sum())
    kept = values.numel() if total == 0 else int((torch.cumsum(values, 0) < energy * total).sum()) + 1
    top = vectors[:, : min(kept, values.numel())]
    return torch.eye(points.shape[1], dtype=torch.float64, device=points.device) - top @ top.T


class SamplerObjective:
    """The loss term over S, lambda sigma^2 / 2 and the subspace penalty, for M and sigma^2.
    ``prepare(points, shard)`` once per data tensor; ``state_dict`` / ``load_state_dict`` carry
    the loss's state (the active set) through a checkpoint."""

    def __init__(self, *, loss: DistortionLoss, reg_weight: float, subspace_penalty: float, subspace_energy: float):
        self.loss, self.reg_weight = loss, float(reg_weight)
        self.subspace_penalty, self.subspace_energy = float(subspace_penalty), float(subspace_energy)
        self.complement: torch.Tensor | None = None

    def prepare(self, points: torch.Tensor, shard: Shard = SINGLE, dtype: torch.dtype = torch.float32) -> None:
        self.loss.prepare(points, shard)
        if self.subspace_penalty:
            self.complement = principal_complement(points, self.subspace_energy).to(dtype)

    def __call__(self, mean: torch.Tensor, variance, n_samples: int, step: int, total_steps: int):
        """(loss, mean sampled max distortion, sigma^2) at M = ``mean`` and ``variance``'s sigma^2."""
        s2 = variance.value()
        sigma = None if variance.is_frozen else variance.sigma(s2)
        term, hard = self.loss(mean, sigma, n_samples, step, total_steps)
        loss = term.mean() + self.reg_weight * s2 / 2
        if self.complement is not None:
            loss = loss + self.subspace_penalty * (mean @ self.complement).pow(2).sum() / mean.shape[0]
        return loss, hard.detach().mean(), s2

    def state_dict(self) -> dict:
        return {"loss": self.loss.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.loss.load_state_dict(state.get("loss") or {})
