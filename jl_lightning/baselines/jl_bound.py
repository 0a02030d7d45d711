"""The Johnson-Lindenstrauss bound: the k that the lemma guarantees for n points at a given eps."""

from __future__ import annotations

import math

import numpy as np


def johnson_lindenstrauss_min_dim(n_samples, eps=0.1):
    """The k that the JL lemma guarantees for n points at distortion eps (scikit-learn's formula).

    k >= 4 log(n) / (eps^2 / 2 - eps^3 / 3). Accepts scalars or arrays, like scikit-learn.
    """
    eps = np.asarray(eps, dtype=float)
    n_samples = np.asarray(n_samples)
    if np.any(eps <= 0.0) or np.any(eps >= 1):
        raise ValueError(f"the JL bound is defined for 0 < eps < 1, got {eps}")
    if np.any(n_samples <= 0):
        raise ValueError(f"the number of samples must be positive, got {n_samples}")
    denominator = (eps**2 / 2) - (eps**3 / 3)
    return (4 * np.log(n_samples) / denominator).astype(np.int64)


def johnson_lindenstrauss_eps(n_samples: int, k: int) -> float:
    """The inverse: the smallest eps in (0, 1) whose guaranteed dimension is <= k.

    Returns ``math.inf`` when even eps -> 1 needs more than k dimensions.
    """
    if n_samples <= 1:
        return 0.0
    target = 4 * math.log(n_samples) / k  # need eps^2/2 - eps^3/3 >= target
    if target > 1 / 6:
        return math.inf
    lo, hi = 0.0, 1.0
    for _ in range(200):  # bisection on an increasing function of eps
        mid = (lo + hi) / 2
        if mid**2 / 2 - mid**3 / 3 >= target:
            hi = mid
        else:
            lo = mid
    return hi
