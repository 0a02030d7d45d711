"""Reparameterized samples of A ~ N(M, sigma^2) / sqrt(k), applied to vectors without forming A.

With E ~ N(0, I) of shape (k, d), A = (M + sigma E) / sqrt(k), so that at M = 0 and
sigma^2 = 1 we have E ||A x||^2 = ||x||^2. Every sampled quantity in jl_lightning goes
through :func:`draw_noise` and :func:`embed` (or :func:`embed_rowwise`), so gradients reach
M and sigma through one reparameterization.

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
        raise JLInputError(f"model.loss.sampling must be one of {list(SAMPLING_MODES)}, got {mode!r}")
    if mode == "auto":
        return "span" if n <= d else "full"
    return mode


def span_factor(points: torch.Tensor) -> torch.Tensor:
    """R of shape (min(n, d), n) with points^T = Q R; law(E X^T) = law(Z R)."""
    return torch.linalg.qr(points.T, mode="reduced").R


def draw_noise(n_samples: int, k: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """E ~ N(0, 1) of shape (n_samples, k, width), on ``like``'s device and dtype (the global RNG)."""
    return torch.randn(n_samples, k, width, device=like.device, dtype=like.dtype)


def embed(
    mean: torch.Tensor,
    sigma: torch.Tensor | None,
    noise: torch.Tensor | None,
    vectors: torch.Tensor,
    factor: torch.Tensor | None = None,
    scaled: bool = True,
) -> torch.Tensor:
    """A_s v^T for every sample s and every row v of ``vectors`` (m, d): shape (N, k, m).

    ``noise`` None means the deterministic mean (shape (1, k, m)). With the span trick,
    ``noise`` has shape (N, k, r) and ``factor`` is :func:`span_factor` of ``vectors``.
    ``scaled=False`` leaves out the 1 / sqrt(k), for callers that divide squared norms by k.
    """
    projected = mean @ vectors.T  # (k, m)
    if noise is None:
        out = projected.unsqueeze(0)
        return out / math.sqrt(mean.shape[0]) if scaled else out
    out = projected + sigma * (noise @ (vectors.T if factor is None else factor))
    return out / math.sqrt(mean.shape[0]) if scaled else out


def embed_rowwise(
    mean: torch.Tensor, sigma: torch.Tensor | None, noise: torch.Tensor | None, vectors: torch.Tensor
) -> torch.Tensor:
    """A_s v_s for sample s and row s of ``vectors`` (N, d): shape (N, k), without the 1 / sqrt(k).

    The active pair loss recomputes each sample's own worst pair with this, so the backward
    pass touches N pairs instead of N x P.
    """
    out = vectors @ mean.T  # (N, k)
    if noise is not None:
        out = out + sigma * torch.einsum("skd,sd->sk", noise, vectors)
    return out


def sample_embedded(
    mean: torch.Tensor,
    sigma: torch.Tensor | None,
    n_samples: int,
    points: torch.Tensor,
    factor: torch.Tensor | None = None,
) -> torch.Tensor:
    """A_s X^T for ``n_samples`` fresh matrices A_s (the losses' one sampling path), shape
    (n_samples, k, n); with ``sigma`` None (sigma^2 frozen at 0) the deterministic
    M X^T / sqrt(k), shape (1, k, n). ``factor`` is :func:`span_factor` of ``points`` for the
    span trick, or None to draw the full (n_samples, k, d) noise."""
    noise = None
    if sigma is not None:
        width = points.shape[1] if factor is None else factor.shape[0]
        noise = draw_noise(n_samples, mean.shape[0], width, mean)
    return embed(mean, sigma, noise, points, factor)
