"""The SRHT as one compiled pass per row (optional: needs numba, ``pip install -e '.[fast]'``).

y = scale * (H D x)[rows], with D the random signs, H the p x p Sylvester Hadamard matrix
(p = d padded to a power of 2) and ``rows`` the k sampled coordinates. Pure torch makes
a few block products for the whole of H (``baselines.fwht``); this kernel keeps each row in a
p-long buffer in cache and, because only k of the p outputs are wanted, does not finish
the transform:

* Write p = 2^m * L and an index r = hi * L + lo. H_p = H_{2^m} (x) H_L, so
  (H x)[hi * L + lo] = sum_l H_L[lo, l] * b[hi * L + l], where b is x after only the m
  butterfly levels of the high bits.
* Those m levels run over the whole buffer (two levels per pass, contiguous inner loops
  that vectorize; the first one also applies the signs and the zero padding). Each of the
  k outputs is then one contiguous dot product of length L with a precomputed row of
  +-scale, the table.
* m minimizes m * p + k * L: about log2(k) levels instead of log2(p) for the full
  transform, i.e. 7 p instead of 12 p operations per row at p = 4096, k = 64.

``baselines.SRHT`` uses this kernel when numba is installed and the input is a CPU float32
or float64 array that needs no gradient and holds at least ``KERNEL_MIN_ELEMENTS`` entries
(any size with ``backend="numba"``); otherwise it uses the torch transform. Both give
the same numbers to rounding (tests/test_srht_kernel.py). Timings: docs/benchmarks.md.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util

import numpy as np
import torch

# numba is optional, and imported only where the kernel runs (compiled()): its import is
# one of the slowest of a process start, which a run that never applies the kernel skips
AVAILABLE = importlib.util.find_spec("numba") is not None

# Inputs below this many entries take the torch transform with backend "auto": there the
# torch transform is cheap, and importing numba and loading the cached kernel (once per
# process) would cost more than the kernel saves over the calls a run makes
# (docs/benchmarks.md, Small runs).
KERNEL_MIN_ELEMENTS = 1 << 20


@functools.cache
def compiled():
    """The module holding the compiled kernel (``srht_numba``), imported on first use."""
    return importlib.import_module("jl_lightning.baselines.srht_numba")


def _parity(v: np.ndarray) -> np.ndarray:
    """Parity of the set bits of nonnegative int64 values (v < 2^32)."""
    v = v.copy()
    for shift in (16, 8, 4, 2, 1):
        v ^= v >> shift
    return v & 1


def hadamard_signs(rows: np.ndarray, columns: int) -> np.ndarray:
    """H[rows, :columns] of the Sylvester Hadamard matrix (int64 +-1), without forming H:
    H[i, j] = (-1)^popcount(i & j)."""
    rows = np.asarray(rows, dtype=np.int64)
    return 1 - 2 * _parity(np.bitwise_and(rows[:, None], np.arange(columns, dtype=np.int64)[None, :]))


def levels(k: int, p: int) -> int:
    """The number m of butterfly levels done in full: it minimizes m * p + k * p / 2^m."""
    top = p.bit_length() - 1
    return min(range(top + 1), key=lambda m: (m * p + k * (p >> m), m))


def make_plan(rows: np.ndarray, p: int, scale: float, dtype) -> tuple[int, np.ndarray, np.ndarray]:
    """(m, hi, table) for the kernel: m high levels in full; output c is the dot product of
    ``table[c]`` (k x L, entries +-scale) with the buffer's block ``hi[c]``."""
    rows = np.asarray(rows, dtype=np.int64)
    m = levels(len(rows), p)
    L = p >> m
    hi, lo = rows // L, rows % L
    return m, hi, (hadamard_signs(lo, L) * scale).astype(dtype)


def apply(
    X: np.ndarray, signs: np.ndarray, plan: tuple[int, np.ndarray, np.ndarray], threads: int | None = None
) -> np.ndarray:
    """(n, d) float32/float64 -> (n, k) in X's dtype, on ``threads`` threads (default:
    numba's, the number of cores)."""
    if not AVAILABLE:
        raise ImportError("the compiled SRHT needs numba: pip install -e '.[fast]'")
    kernel = compiled()
    numba = kernel.numba
    m, hi, table = plan
    X = np.ascontiguousarray(X)
    n_threads = numba.config.NUMBA_NUM_THREADS if threads is None else int(threads)
    n_threads = max(1, min(n_threads, numba.config.NUMBA_NUM_THREADS))
    # numba's OpenMP threading layer and torch share one OpenMP thread count: give torch's back
    torch_threads = torch.get_num_threads()
    try:
        numba.set_num_threads(n_threads)
        signs = np.ascontiguousarray(signs, dtype=X.dtype)
        return kernel.srht_rows(X, signs, hi, table.astype(X.dtype, copy=False), m, n_threads)
    finally:
        torch.set_num_threads(torch_threads)
