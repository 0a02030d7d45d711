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
import warnings

import numpy as np
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


def draw_noise(n_samples: int, k: int, width: int, like: torch.Tensor, columns_first: bool = False) -> torch.Tensor:
    """E ~ N(0, 1) of shape (n_samples, k, width), on ``like``'s device and dtype (the global RNG).
    ``columns_first``: the same law, laid out as (width, n_samples, k) in memory (a permuted
    view), for sparse products that read the noise one column of E at a time."""
    if columns_first:
        return torch.randn(width, n_samples, k, device=like.device, dtype=like.dtype).permute(1, 2, 0)
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


# ------------------------------------------------------- rows fetched in chunks
def rows_times(rows, weights: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
    """rows @ weights^T for a chunk of rows: a dense tensor, or a scipy.sparse matrix (one
    sparse product, torch's CSR kernel on the weights as they lie, nnz x m operations, never
    densified); shape (c, m). ``cache`` keeps the weights' transposed copy between the chunks
    of one pass."""
    if isinstance(rows, torch.Tensor):
        return rows @ weights.T
    rows = rows.tocsr()
    with warnings.catch_warnings():  # torch calls its CSR support beta; scipy checked the arrays
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        csr = torch.sparse_csr_tensor(
            torch.from_numpy(rows.indptr.astype(np.int64)),
            torch.from_numpy(rows.indices.astype(np.int64)),
            torch.from_numpy(rows.data).to(weights.dtype),
            size=rows.shape,
            check_invariants=False,
        )
    cache = {} if cache is None else cache
    if id(weights) not in cache:
        cache[id(weights)] = weights.detach().cpu().T.contiguous()  # free for noise drawn columns-first
    return (csr @ cache[id(weights)]).to(weights.device)


def rows_transposed_times(rows, grad: torch.Tensor) -> torch.Tensor:
    """rows^T @ grad, shape (d, m): the gradient side of :func:`rows_times`."""
    if isinstance(rows, torch.Tensor):
        return rows.T @ grad
    product = rows.T @ grad.detach().cpu().numpy().astype(rows.dtype, copy=False)
    return torch.as_tensor(np.asarray(product), dtype=grad.dtype, device=grad.device)


class _RowImages(torch.autograd.Function):
    """(R M^T, R E_s^T for each sample s) for rows R that ``fetch(start, stop)`` hands over a
    chunk at a time: the backward fetches them again for dL/dM = G^T R, so memory holds one
    chunk of rows whatever their number and d. The noise images carry no gradient (sigma
    multiplies them outside)."""

    @staticmethod
    def forward(ctx, mean, noise, fetch, count, chunk):
        k = mean.shape[0]
        images = torch.empty(count, k, dtype=mean.dtype, device=mean.device)
        noisy = None
        if noise is not None:
            # (N k, d): one product per chunk; a view of noise drawn either way (draw_noise)
            flat = noise.permute(2, 0, 1).reshape(noise.shape[-1], -1).T
            noisy = torch.empty(count, flat.shape[0], dtype=mean.dtype, device=mean.device)
        cache: dict = {}
        for start in range(0, count, chunk):
            stop = min(start + chunk, count)
            rows = fetch(start, stop)
            images[start:stop] = rows_times(rows, mean, cache)
            if noisy is not None:
                noisy[start:stop] = rows_times(rows, flat, cache)
        ctx.fetch, ctx.count, ctx.chunk = fetch, count, chunk
        # rows that came in one chunk fit the budget: kept for the backward instead of fetched again
        ctx.rows = rows if count <= chunk else None
        if noisy is None:
            noisy = torch.empty(count, 0, k, dtype=mean.dtype, device=mean.device)
        else:
            noisy = noisy.view(count, noise.shape[0], k)
        ctx.mark_non_differentiable(noisy)
        return images, noisy

    @staticmethod
    def backward(ctx, grad_images, grad_noisy):
        grad = None
        if ctx.needs_input_grad[0]:
            for start in range(0, ctx.count, ctx.chunk):
                stop = min(start + ctx.chunk, ctx.count)
                rows = ctx.rows if ctx.rows is not None else ctx.fetch(start, stop)
                part = rows_transposed_times(rows, grad_images[start:stop]).T
                grad = part if grad is None else grad.add_(part)
        return grad, None, None, None, None


def row_images(
    mean: torch.Tensor, noise: torch.Tensor | None, fetch, count: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(R M^T of shape (count, k), with gradient to M; R E_s^T of shape (count, N, k) or None)
    for ``count`` rows R that ``fetch(start, stop)`` returns ``chunk`` at a time (dense tensors
    or scipy.sparse), without the 1 / sqrt(k): the same products as :func:`embed` on the rows,
    in memory bounded by one chunk."""
    images, noisy = _RowImages.apply(mean, noise, fetch, count, max(1, int(chunk)))
    return images, (noisy if noise is not None else None)


class _SampledSqNorms(torch.autograd.Function):
    """||u_p + sigma v_ps||^2 for every pair p and sample s, shape (P, N), where u_p = a_i - a_j
    are the pairs' mean images (with gradient) and v_ps = b_is - b_js their noise images (none),
    with i = ``first[p]``, j = ``second[p]`` (None: the rows are the pairs already). Expanded as
    ||u||^2 + 2 sigma u.v + sigma^2 ||v||^2, so the (P, N, k) tensor is formed once and read by
    two batched products and one norm, instead of the several (P, N, k) temporaries that
    autograd keeps for the sum, the square and their gradients."""

    @staticmethod
    def forward(ctx, images, noisy, sigma, first, second):
        if first is None:
            u, v = images, noisy
        else:
            u = images.index_select(0, first).sub_(images.index_select(0, second))
            v = noisy.index_select(0, first).sub_(noisy.index_select(0, second))
        uv = torch.bmm(v, u.unsqueeze(2)).squeeze(2)
        vv = torch.linalg.vector_norm(v, dim=2).pow_(2)
        sq = u.pow(2).sum(1, keepdim=True) + (2 * sigma) * uv + sigma.pow(2) * vv
        ctx.save_for_backward(u, v, uv, vv, sigma)
        ctx.first, ctx.second, ctx.rows = first, second, images.shape[0]
        return sq

    @staticmethod
    def backward(ctx, grad):
        u, v, uv, vv, sigma = ctx.saved_tensors
        grad_images = grad_sigma = None
        if ctx.needs_input_grad[0]:
            gu = u * grad.sum(1, keepdim=True) + sigma * torch.bmm(grad.unsqueeze(1), v).squeeze(1)
            gu.mul_(2)
            if ctx.first is None:
                grad_images = gu
            else:
                grad_images = torch.zeros(ctx.rows, u.shape[1], dtype=u.dtype, device=u.device)
                grad_images.index_add_(0, ctx.first, gu).index_add_(0, ctx.second, gu, alpha=-1)
        if ctx.needs_input_grad[2]:
            grad_sigma = (grad * (2 * uv + (2 * sigma) * vv)).sum().reshape(sigma.shape)
        return grad_images, None, grad_sigma, None, None


def sampled_sq_norms(images, noisy, sigma, first=None, second=None) -> torch.Tensor:
    """||(a_i - a_j) + sigma (b_i - b_j)||^2 per pair and sample, shape (P, N): ``images`` a
    (m, k) with gradient, ``noisy`` b (m, N, k) without, ``sigma`` a 0-d tensor, and the pairs
    (``first``, ``second``) index vectors into the m rows (None: row p is pair p).

    Examples
    --------
    >>> a, b = torch.randn(4, 3), torch.randn(4, 2, 3)
    >>> i, j, s = torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor(0.5)
    >>> direct = ((a[i] - a[j])[:, None] + s * (b[i] - b[j])).pow(2).sum(-1)
    >>> torch.allclose(sampled_sq_norms(a, b, s, i, j), direct, atol=1e-5)
    True
    """
    return _SampledSqNorms.apply(images, noisy, sigma, first, second)
