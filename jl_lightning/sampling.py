"""Reparameterized samples of the embedded points Y = A X^T for A ~ N(M, sigma^2) / sqrt(k).

With E ~ N(0, I) of shape (k, d), A = (M + sigma E) / sqrt(k), so that at M = 0 and
sigma^2 = 1 we have E ||A x||^2 = ||x||^2.

The span trick: write X^T = Q R (reduced QR, Q of shape (d, n) with orthonormal
columns, R of shape (n, n)). Then E X^T = (E Q) R and E Q has i.i.d. N(0, 1)
entries, so E X^T has exactly the law of Z R with Z ~ N(0, I) of shape (k, n).
When n <= d this draws k*n instead of k*d normals and multiplies by an n x n
matrix instead of a d x n one: an exact and cheaper sampler of the same
distribution, and of the same reparameterized gradient.
"""

from __future__ import annotations

import math

import torch

from jl_lightning.errors import JLInputError

SAMPLING_MODES = ("auto", "span", "full")


def resolve_sampling(mode: str, n: int, d: int) -> str:
    """``auto`` picks ``span`` when n <= d (exact and cheaper) and ``full`` otherwise."""
    if mode not in SAMPLING_MODES:
        raise JLInputError(f"model.sampling must be one of {list(SAMPLING_MODES)}, got {mode!r}")
    if mode == "auto":
        return "span" if n <= d else "full"
    return mode


def span_factor(points: torch.Tensor) -> torch.Tensor:
    """R of shape (min(n, d), n) with points^T = Q R; law(E X^T) = law(Z R)."""
    return torch.linalg.qr(points.T, mode="reduced").R


def sample_embedded(mean: torch.Tensor, sigma: torch.Tensor, points: torch.Tensor,
                    n_samples: int, factor: torch.Tensor | None = None) -> torch.Tensor:
    """Draw ``n_samples`` matrices A and return A X^T, shape (n_samples, k, n).

    ``factor`` is :func:`span_factor` of ``points`` for the span trick, or None
    to draw the full (n_samples, k, d) noise.
    """
    k = mean.shape[0]
    projected = mean @ points.T  # (k, n)
    if factor is None:
        noise = torch.randn(n_samples, k, points.shape[1], device=mean.device, dtype=mean.dtype)
        noise = noise @ points.T
    else:
        noise = torch.randn(n_samples, k, factor.shape[0], device=mean.device, dtype=mean.dtype)
        noise = noise @ factor
    return (projected + sigma * noise) / math.sqrt(k)
