"""Distortion of a linear map on a set of points: the one place it is computed.

The distortion of A on x is the paper's squared-norm definition

    eps(A, x) = | ||A x||^2 / ||x||^2 - 1 |,

and a run's figure is the maximum over all points. It is computed exactly (every
point, never a sample) in chunks of rows, so memory stays within
``memory_budget`` bytes whatever n is, and in float64 by default.

``ratio_distortion`` is the elementwise formula; the training loss uses it too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

DEFAULT_MEMORY_BUDGET = 256 * 2**20  # bytes of temporaries per chunk


def ratio_distortion(embedded_sq: torch.Tensor, original_sq: torch.Tensor) -> torch.Tensor:
    """|embedded_sq / original_sq - 1|, elementwise (broadcasting)."""
    return (embedded_sq / original_sq - 1.0).abs()


@dataclass(frozen=True)
class DistortionReport:
    """Exact distortion of a matrix on n points (norms mode)."""

    epsilon: float  # max_i |ratio_i - 1|
    worst_index: int  # argmax of the above
    min_ratio: float  # min_i ||A x_i||^2 / ||x_i||^2
    max_ratio: float
    mean_abs: float  # mean_i |ratio_i - 1|
    n_points: int

    @property
    def multiplicative(self) -> float:
        """sqrt(max ratio / min ratio): the scale-free distortion of the norms."""
        if self.min_ratio <= 0:
            return math.inf
        return math.sqrt(self.max_ratio / self.min_ratio)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["multiplicative"] = self.multiplicative
        return out


def _as_tensor(array, dtype: torch.dtype, device=None) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array.detach().to(dtype=dtype, device=device)
    return torch.as_tensor(np.asarray(array), dtype=dtype, device=device)


def chunk_rows(d: int, k: int, itemsize: int, memory_budget: int) -> int:
    """Rows per chunk so that a chunk of points and its image fit the budget."""
    per_row = (d + k + 2) * itemsize
    return max(1, int(memory_budget // per_row))


@torch.no_grad()
def norm_distortion(matrix, points, *, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                    dtype: torch.dtype = torch.float64) -> DistortionReport:
    """Exact distortion of ``matrix`` (k, d) on every row of ``points`` (n, d).

    Rows of zero norm are rejected by the data validation before this is called;
    here they would give an infinite ratio.
    """
    device = matrix.device if isinstance(matrix, torch.Tensor) else None
    A = _as_tensor(matrix, dtype, device)
    if A.ndim != 2:
        raise ValueError(f"matrix must be 2-D (k, d), got shape {tuple(A.shape)}")
    n = len(points)
    d = A.shape[1]
    rows = chunk_rows(d, A.shape[0], torch.finfo(dtype).bits // 8, memory_budget)
    eps, worst, rmin, rmax, total = -1.0, -1, math.inf, -math.inf, 0.0
    for start in range(0, n, rows):
        X = _as_tensor(points[start:start + rows], dtype, A.device)
        if X.ndim != 2 or X.shape[1] != d:
            raise ValueError(f"points must have shape (n, {d}), got a chunk of shape {tuple(X.shape)}")
        ratios = (X @ A.T).pow(2).sum(1) / X.pow(2).sum(1)
        dev = (ratios - 1.0).abs()
        i = int(dev.argmax())
        if float(dev[i]) > eps:
            eps, worst = float(dev[i]), start + i
        rmin = min(rmin, float(ratios.min()))
        rmax = max(rmax, float(ratios.max()))
        total += float(dev.sum())
    if n == 0:
        raise ValueError("points is empty")
    return DistortionReport(epsilon=eps, worst_index=worst, min_ratio=rmin, max_ratio=rmax,
                            mean_abs=total / n, n_points=n)


def max_distortion(matrix, points, **kwargs) -> float:
    """Shorthand: the worst-case epsilon of ``matrix`` on ``points``."""
    return norm_distortion(matrix, points, **kwargs).epsilon
