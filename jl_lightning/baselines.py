"""The reference constructions a learned matrix is measured against.

Each random construction takes (k, d) and a seed and returns a linear map the
evaluator accepts: a (k, d) float64 matrix, or, for the SRHT, an operator with
``apply(X)`` that is never materialized. Every random map satisfies
E ||A x||^2 = ||x||^2.

* ``gaussian``: i.i.d. N(0, 1/k).
* ``rademacher``: i.i.d. +-1/sqrt(k).
* ``sparse``: Achlioptas (density 1/3) or Li, Hastie and Church's very sparse
  projection (``density="auto"`` = 1/sqrt(d), scikit-learn's default): entries
  +-1/sqrt(density k) with probability density/2 each, 0 otherwise.
* ``srht``: the subsampled randomized Hadamard transform (FJLT): random signs,
  zero-padding to p = 2^ceil(log2 d), the orthonormal Walsh-Hadamard transform in
  O(p log p), k coordinates sampled without replacement, scaled by sqrt(p/k).
  With numba installed it runs as one compiled in-cache pass per row (``srht_kernel``).
* ``pca``: the top-k principal directions of the data (centered, as scikit-learn's
  PCA), plain and with the single scale factor that minimizes the worst-case epsilon.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from jl_lightning import srht_kernel
from jl_lightning.distortion import DEFAULT_MEMORY_BUDGET, DistortionReport, evaluate, max_distortions

RANDOM_METHODS = ("gaussian", "rademacher", "sparse", "srht")
_DRAWS_PER_PASS = 16


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


def sparse_matrix(k: int, d: int, generator: torch.Generator, density="auto",
                  dtype=torch.float64) -> torch.Tensor:
    """Achlioptas / Li's sparse projection, dense storage (k x d is small here)."""
    s = sparse_density(density, d)
    u = torch.rand(k, d, generator=generator, dtype=torch.float64)
    values = torch.zeros(k, d, dtype=dtype)
    values[u < s / 2] = -1.0
    values[(u >= s / 2) & (u < s)] = 1.0
    return values / math.sqrt(s * k)


FWHT_BLOCK_ROWS = 64  # rows transformed together: their p values stay in cache through all log2(p) levels


def fwht(x: torch.Tensor) -> torch.Tensor:
    """Unnormalized fast Walsh-Hadamard transform along the last dimension (a power of 2).

    Equals ``x @ H`` for the Sylvester Hadamard matrix H (entries +-1), in O(p log p).
    Rows go through in blocks of ``FWHT_BLOCK_ROWS``, so each block stays in cache for
    its log2(p) butterfly passes (2x to 6x faster than whole-array passes here).
    """
    p = x.shape[-1]
    if p & (p - 1):
        raise ValueError(f"the last dimension must be a power of 2, got {p}")
    lead = x.shape[:-1]
    flat = x.reshape(-1, p)
    if flat.shape[0] <= FWHT_BLOCK_ROWS:
        return _fwht_rows(flat).reshape(*lead, p)
    out = torch.empty_like(flat)
    for start in range(0, flat.shape[0], FWHT_BLOCK_ROWS):
        out[start:start + FWHT_BLOCK_ROWS] = _fwht_rows(flat[start:start + FWHT_BLOCK_ROWS])
    return out.reshape(*lead, p)


def _fwht_rows(y: torch.Tensor) -> torch.Tensor:
    p = y.shape[-1]
    h = 1
    while h < p:
        y = y.reshape(-1, p // (2 * h), 2, h)
        y = torch.stack((y[:, :, 0] + y[:, :, 1], y[:, :, 0] - y[:, :, 1]), dim=2)
        h *= 2
    return y.reshape(-1, p)


class SRHT:
    """The subsampled randomized Hadamard transform, applied without a d x d matrix.

    ``backend``: ``"auto"`` uses the compiled kernel (``srht_kernel``, numba) where it
    applies (numba installed, a CPU float32/float64 input without gradient) and the torch
    transform otherwise; ``"torch"`` or ``"numba"`` force one (``"numba"`` fails without
    numba). Both give the same map to rounding.
    """

    BACKENDS = ("auto", "torch", "numba")

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

    def _use_kernel(self, X: torch.Tensor) -> bool:
        if self.backend == "torch" or not srht_kernel.AVAILABLE:
            return False
        fits = X.device.type == "cpu" and X.dtype in (torch.float32, torch.float64) and not X.requires_grad
        if self.backend == "numba" and not fits:
            raise ValueError("SRHT backend='numba' takes CPU float32/float64 input without gradient, "
                             f"got {X.dtype} on {X.device} (requires_grad={X.requires_grad})")
        return fits

    def apply(self, X: torch.Tensor) -> torch.Tensor:
        """(m, d) -> (m, k)."""
        X = torch.as_tensor(X)
        if self._use_kernel(X):
            if self._plan is None:
                self._plan = srht_kernel.make_plan(self.rows.numpy(), self.p, self.scale, np.float64)
            out = srht_kernel.apply(X.detach().numpy(), self.signs.numpy(), self._plan,
                                    threads=torch.get_num_threads())
            return torch.from_numpy(out)
        signed = X * self.signs.to(X.dtype)
        if self.p != self.d:
            signed = torch.nn.functional.pad(signed, (0, self.p - self.d))
        return fwht(signed)[:, self.rows] * self.scale


def random_map(method: str, k: int, d: int, generator: torch.Generator, density="auto"):
    """One draw of a random construction, by name."""
    if method == "gaussian":
        return gaussian_matrix(k, d, generator)
    if method == "rademacher":
        return rademacher_matrix(k, d, generator)
    if method == "sparse":
        return sparse_matrix(k, d, generator, density)
    if method == "srht":
        return SRHT(k, d, generator)
    raise ValueError(f"unknown method {method!r}; expected one of {RANDOM_METHODS}")


def random_baseline(method: str, points, k: int, draws: int = 100, seed: int = 0, mode: str = "norms",
                    memory_budget: int = DEFAULT_MEMORY_BUDGET, density="auto") -> dict:
    """Worst-case epsilon of ``draws`` independent draws: mean, best (smallest) and std.

    Uses its own generator, so it never disturbs training.
    """
    if draws <= 0:
        raise ValueError(f"baseline draws must be positive, got {draws}")
    gen = torch.Generator().manual_seed(int(seed))
    d = points.shape[1]
    values = []
    for start in range(0, draws, _DRAWS_PER_PASS):  # several draws share one pass over the data
        maps = [random_map(method, k, d, gen, density) for _ in range(min(_DRAWS_PER_PASS, draws - start))]
        values.extend(max_distortions(maps, points, mode, memory_budget=memory_budget))
    values = np.array(values)
    return {"method": method, "draws": int(draws), "seed": int(seed), "mode": mode,
            "mean": float(values.mean()), "best": float(values.min()), "std": float(values.std())}


def gaussian_baseline(points, k: int, draws: int = 1000, seed: int = 0,
                      memory_budget: int = DEFAULT_MEMORY_BUDGET) -> dict:
    """The paper's Appendix B reference: N(0, 1/k) matrices in norms mode."""
    return random_baseline("gaussian", points, k, draws, seed, "norms", memory_budget)


def pca_matrix(points, k: int) -> np.ndarray:
    """The top-k principal directions (rows) of the centered data, shape (k, d)."""
    X = np.asarray(points, dtype=np.float64)
    if not 1 <= k <= min(X.shape):
        raise ValueError(f"PCA needs 1 <= k <= min(n, d) = {min(X.shape)}, got k={k}")
    _, _, vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
    return vt[:k]


def best_scale(report: DistortionReport) -> tuple[float, float]:
    """(s, epsilon of s A): the single matrix factor minimizing the worst-case epsilon.

    Scaling A by s scales every squared-norm ratio r by s^2. With every ratio in
    [r_min, r_max], s^2 = 2 / (r_min + r_max) gives
    epsilon = (r_max - r_min) / (r_max + r_min), and no s does better.
    """
    lo, hi = report.min_ratio, report.max_ratio
    if hi <= 0:
        raise ValueError("the map sends every vector to 0; no scale helps")
    return math.sqrt(2.0 / (lo + hi)), (hi - lo) / (hi + lo)


def pca_baseline(points, k: int, mode: str = "norms", memory_budget: int = DEFAULT_MEMORY_BUDGET) -> dict:
    """PCA to k dimensions, plain and with its best single scale."""
    A = pca_matrix(points, k)
    report = evaluate(A, points, mode, memory_budget=memory_budget, quantiles=False)
    c, eps_scaled = best_scale(report)
    return {"method": "pca", "mode": mode, "epsilon": report.epsilon, "scale": c,
            "epsilon_scaled": eps_scaled}


REFERENCE_METHODS = ("gaussian", "sparse", "srht", "pca")


def reference_figures(points, k: int, mode: str = "norms", draws: int = 100, seed: int = 0,
                      methods=REFERENCE_METHODS, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> dict:
    """The references a learned matrix is read against, on the same points and in the same mode:
    mean / best / std over ``draws`` draws for each random method, epsilon plain and best-scaled
    for PCA (left out, with a reason, when k > min(n, d))."""
    out = {}
    for method in methods:
        if method == "pca":
            if k > min(points.shape):
                out["pca"] = {"method": "pca", "skipped": f"k={k} > min(n, d)={min(points.shape)}"}
            else:
                out["pca"] = pca_baseline(points, k, mode, memory_budget)
        else:
            out[method] = random_baseline(method, points, k, draws, seed, mode, memory_budget)
    return out


def reference_scalars(references: dict) -> dict[str, float]:
    """Flat ``reference/...`` scalars for loggers: <method>_mean and <method>_best, pca and pca_scaled."""
    scalars = {}
    for method, figures in references.items():
        if method == "pca":
            if "epsilon" in figures:
                scalars["reference/pca"] = figures["epsilon"]
                scalars["reference/pca_scaled"] = figures["epsilon_scaled"]
        else:
            scalars[f"reference/{method}_mean"] = figures["mean"]
            scalars[f"reference/{method}_best"] = figures["best"]
    return scalars


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
    denominator = (eps ** 2 / 2) - (eps ** 3 / 3)
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
        if mid ** 2 / 2 - mid ** 3 / 3 >= target:
            hi = mid
        else:
            lo = mid
    return hi
