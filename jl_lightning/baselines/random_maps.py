"""The random JL maps a learned matrix is measured against.

Each construction takes (k, d) and a torch generator and returns a linear map the
evaluator accepts: a (k, d) float64 matrix, or, for the SRHT, an operator with
``apply(X)`` (never a p x p matrix). Every random map satisfies
E ||A x||^2 = ||x||^2.

* ``gaussian``: i.i.d. N(0, 1/k).
* ``rademacher``: i.i.d. +-1/sqrt(k).
* ``sparse``: Achlioptas (density 1/3) or Li, Hastie and Church's very sparse
  projection (``density="auto"`` = 1/sqrt(d), scikit-learn's default): entries
  +-1/sqrt(density k) with probability density/2 each, 0 otherwise.
* ``srht``: the subsampled randomized Hadamard transform (FJLT): random signs,
  zero-padding to p = 2^ceil(log2 d), the orthonormal Walsh-Hadamard transform (never
  a p x p matrix: :func:`fwht`), k coordinates sampled without replacement, scaled by sqrt(p/k).
  With numba installed, large inputs run as one compiled in-cache pass per row (``srht_kernel``);
  otherwise, while k and the k x d matrix are small (``SRHT_DENSE_MAX_K``,
  ``SRHT_DENSE_MAX_ENTRIES``), it is formed once from the k sampled Hadamard rows and applied
  as one product, which BLAS does faster than the transform's many small products.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from jl_lightning.baselines import srht_kernel


def gaussian_matrix(k: int, d: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """One N(0, 1/k) matrix of shape (k, d): E ||A x||^2 = ||x||^2."""
    return torch.randn(k, d, generator=generator, dtype=dtype) / math.sqrt(k)


def rademacher_matrix(k: int, d: int, generator: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    """One matrix of i.i.d. +-1/sqrt(k) entries."""
    signs = torch.randint(0, 2, (k, d), generator=generator).to(dtype) * 2 - 1
    return signs / math.sqrt(k)


def sparse_density(density, d: int) -> float:
    """scikit-learn's rule: ``"auto"`` means 1/sqrt(d); otherwise a number in (0, 1]."""
    if density == "auto":
        return 1.0 / math.sqrt(d)
    density = float(density)
    if not 0 < density <= 1:
        raise ValueError(f"density must be in (0, 1] or 'auto', got {density}")
    return density


def sparse_matrix(k: int, d: int, generator: torch.Generator, density="auto", dtype=torch.float64) -> torch.Tensor:
    """Achlioptas / Li's sparse projection, dense storage (k x d is small here)."""
    s = sparse_density(density, d)
    u = torch.rand(k, d, generator=generator, dtype=torch.float64)
    values = (u < s).to(dtype) - 2 * (u < s / 2).to(dtype)  # -1 below s/2, +1 in [s/2, s), else 0
    return values / math.sqrt(s * k)


FWHT_BLOCK_ELEMENTS = 1 << 17  # entries transformed together (1 MiB in float64): a block stays in cache
FWHT_FACTOR_BITS = 6  # the transform is a product of Hadamard blocks of at most 2^6 = 64


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Unnormalized fast Walsh-Hadamard transform along the last dimension (a power of 2).

    Equals ``x @ H`` for the Sylvester Hadamard matrix H (entries +-1). H_p is the
    Kronecker product H_a1 (x) ... (x) H_ar of smaller Sylvester matrices (p = a1 ... ar,
    each at most 2^``FWHT_FACTOR_BITS``), so a row viewed as an (a1, ..., ar) array is
    transformed one axis at a time, each axis by one matrix product: r products instead
    of log2(p) butterfly passes, in O(p (a1 + ... + ar)) work, which on small inputs
    saves the per-operation cost that dominates there. Rows go through in blocks of about
    ``FWHT_BLOCK_ELEMENTS`` entries, so each block stays in cache through its r products.
    """
    p = x.shape[-1]
    if p & (p - 1):
        raise ValueError(f"the last dimension must be a power of 2, got {p}")
    lead = x.shape[:-1]
    flat = x.reshape(-1, p)
    rows = max(1, FWHT_BLOCK_ELEMENTS // p)
    if flat.shape[0] <= rows:
        return _fwht_rows(flat).reshape(*lead, p)
    out = torch.empty_like(flat)
    for start in range(0, flat.shape[0], rows):
        out[start : start + rows] = _fwht_rows(flat[start : start + rows])
    return out.reshape(*lead, p)


def _fwht_rows(y: torch.Tensor) -> torch.Tensor:
    """The transform of an (m, p) block. Axis by axis from the last: each product
    transforms the last axis, and the transpose moves it to the front, so after r
    steps the axes are back in their order."""
    m, p = y.shape
    bits = p.bit_length() - 1
    if bits == 0:
        return y.clone()
    r = -(-bits // FWHT_FACTOR_BITS)
    for b in reversed([bits // r + (i < bits % r) for i in range(r)]):
        f = 1 << b
        y = (y.reshape(-1, f) @ _hadamard(b, y.dtype, y.device)).reshape(m, p // f, f).transpose(1, 2)
    return y.reshape(m, p)


@functools.lru_cache(maxsize=32)
def _hadamard(bits: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The Sylvester Hadamard matrix of size 2^bits (entries +-1)."""
    H = torch.ones(1, 1, dtype=dtype, device=device)
    for _ in range(bits):
        H = torch.cat((torch.cat((H, H), 1), torch.cat((H, -H), 1)), 0)
    return H


# The SRHT forms its k x d matrix and applies it as one product while k <= SRHT_DENSE_MAX_K
# and k d <= SRHT_DENSE_MAX_ENTRIES (32 MiB in float64). The torch transform's cost hardly
# depends on k, the product's grows with k: SRHT_DENSE_MAX_K is about where the product
# stops being the faster of the two (docs/benchmarks.md, SRHT section).
SRHT_DENSE_MAX_K = 512
SRHT_DENSE_MAX_ENTRIES = 1 << 22


class SRHT:
    """The subsampled randomized Hadamard transform, applied without a d x d matrix.

    ``backend``: ``"auto"`` uses the compiled kernel (``srht_kernel``, numba) where it
    applies and pays (numba installed, a CPU float32/float64 input without gradient, at
    least ``srht_kernel.KERNEL_MIN_ELEMENTS`` entries); otherwise the k x d matrix
    scale * H[rows, :d] diag(signs), formed once, while k <= ``SRHT_DENSE_MAX_K`` and it has
    at most ``SRHT_DENSE_MAX_ENTRIES`` entries; otherwise the torch transform. ``"torch"``,
    ``"numba"`` or ``"dense"`` force one (``"numba"`` fails without numba). All give the same
    map to rounding.
    """

    BACKENDS = ("auto", "torch", "numba", "dense")

    def __init__(self, k: int, d: int, generator: torch.Generator, backend: str = "auto"):
        if backend not in self.BACKENDS:
            raise ValueError(f"SRHT backend must be one of {self.BACKENDS}, got {backend!r}")
        if backend == "numba" and not srht_kernel.AVAILABLE:
            raise ImportError("SRHT backend='numba' needs numba: pip install -e '.[fast]'")
        self.k, self.d, self.backend = k, d, backend
        self.p = 1 << max(0, math.ceil(math.log2(d)))
        if k > self.p:
            raise ValueError(f"k={k} exceeds the padded dimension {self.p}")
        self.signs = torch.randint(0, 2, (d,), generator=generator).double() * 2 - 1
        self.rows = torch.randperm(self.p, generator=generator)[:k]
        self.scale = math.sqrt(self.p / k) / math.sqrt(self.p)  # orthonormal H, then sqrt(p/k)
        self._plan = None
        self._dense: dict = {}  # (dtype, device) -> the k x d matrix, formed on first use

    def matrix(self, dtype=torch.float64, device=None) -> torch.Tensor:
        """The (k, d) matrix of the map, scale * H[rows, :d] diag(signs)."""
        key = (dtype, torch.device("cpu") if device is None else torch.device(device))
        if key not in self._dense:
            H = torch.from_numpy(srht_kernel.hadamard_signs(self.rows.numpy(), self.d)).double()
            A = H * self.signs * self.scale
            self._dense[key] = A.to(dtype=dtype, device=key[1])
        return self._dense[key]

    def _use_dense(self) -> bool:
        small = self.k <= SRHT_DENSE_MAX_K and self.k * self.d <= SRHT_DENSE_MAX_ENTRIES
        return self.backend == "dense" or (self.backend == "auto" and small)

    def _use_kernel(self, X: torch.Tensor) -> bool:
        if self.backend in ("torch", "dense") or not srht_kernel.AVAILABLE:
            return False
        fits = X.device.type == "cpu" and X.dtype in (torch.float32, torch.float64) and not X.requires_grad
        if self.backend == "numba" and not fits:
            raise ValueError(
                "SRHT backend='numba' takes CPU float32/float64 input without gradient, "
                f"got {X.dtype} on {X.device} (requires_grad={X.requires_grad})"
            )
        # "auto": small inputs stay with torch, where importing numba would cost more than it saves
        return fits and (self.backend == "numba" or X.numel() >= srht_kernel.KERNEL_MIN_ELEMENTS)

    def apply(self, X: torch.Tensor) -> torch.Tensor:
        """(m, d) -> (m, k)."""
        X = torch.as_tensor(X)
        if self._use_kernel(X):
            if self._plan is None:
                self._plan = srht_kernel.make_plan(self.rows.numpy(), self.p, self.scale, np.float64)
            out = srht_kernel.apply(X.detach().numpy(), self.signs.numpy(), self._plan, threads=torch.get_num_threads())
            return torch.from_numpy(out)
        if self._use_dense():
            return X @ self.matrix(X.dtype, X.device).T
        signed = X * self.signs.to(X.dtype)
        if self.p != self.d:
            signed = torch.nn.functional.pad(signed, (0, self.p - self.d))
        return fwht(signed)[:, self.rows] * self.scale
