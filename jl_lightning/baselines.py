"""Random reference matrices, measured with the same exact evaluator."""

from __future__ import annotations

import math

import numpy as np
import torch

from jl_lightning.distortion import DEFAULT_MEMORY_BUDGET, max_distortion


def gaussian_matrix(k: int, d: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """One N(0, 1/k) matrix of shape (k, d): E ||A x||^2 = ||x||^2."""
    return torch.randn(k, d, generator=generator, dtype=dtype) / math.sqrt(k)


def gaussian_baseline(points, k: int, draws: int = 1000, seed: int = 0,
                      memory_budget: int = DEFAULT_MEMORY_BUDGET) -> dict:
    """Worst-case distortion of ``draws`` independent N(0, 1/k) matrices on ``points``.

    Returns the mean and the best (smallest) of the draws, as in the paper's
    Appendix B comparison. Uses its own generator, so it never disturbs training.
    """
    if draws <= 0:
        raise ValueError(f"baseline draws must be positive, got {draws}")
    gen = torch.Generator().manual_seed(int(seed))
    d = np.asarray(points).shape[1] if not isinstance(points, torch.Tensor) else points.shape[1]
    values = np.array([
        max_distortion(gaussian_matrix(k, d, gen), points, memory_budget=memory_budget)
        for _ in range(draws)
    ])
    return {"method": "gaussian", "draws": int(draws), "seed": int(seed),
            "mean": float(values.mean()), "best": float(values.min()), "std": float(values.std())}
