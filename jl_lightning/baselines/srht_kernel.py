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
or float64 array that needs no gradient; otherwise it uses the torch transform. Both give
the same numbers to rounding (tests/test_srht_kernel.py). Timings: docs/benchmarks.md.
"""

from __future__ import annotations

import numpy as np
import torch

try:  # optional dependency
    import numba
except ImportError:  # pragma: no cover - exercised when numba is absent
    numba = None

AVAILABLE = numba is not None

# Floating-point freedoms the kernel may take: reassociate the dot products (vectorized
# sums) and fuse multiply-adds. Not 'nnan'/'ninf', so NaN and inf inputs propagate as usual.
_FASTMATH = {"reassoc", "contract", "nsz"}


def _parity(v: np.ndarray) -> np.ndarray:
    """Parity of the set bits of nonnegative int64 values (v < 2^32)."""
    v = v.copy()
    for shift in (16, 8, 4, 2, 1):
        v ^= v >> shift
    return v & 1


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
    signs = 1 - 2 * _parity(np.bitwise_and(lo[:, None], np.arange(L, dtype=np.int64)[None, :]))
    return m, hi, (signs * scale).astype(dtype)


if AVAILABLE:

    @numba.njit(parallel=True, fastmath=_FASTMATH, cache=True)
    def _srht(X, signs, hi, table, m, n_threads):  # pragma: no cover - compiled; covered through apply()
        n, d = X.shape
        k, L = table.shape
        p = L << m
        out = np.empty((n, k), dtype=X.dtype)
        per_thread = (n + n_threads - 1) // n_threads
        for t in numba.prange(n_threads):
            b = np.zeros(p, dtype=X.dtype)
            for r in range(t * per_thread, min(n, (t + 1) * per_thread)):
                if m == 0:
                    for j in range(d):
                        b[j] = X[r, j] * signs[j]
                    for j in range(d, p):
                        b[j] = 0.0
                    done = 0
                else:
                    # level h = p/2, reading the signed row with its zero padding
                    h = p >> 1
                    both = max(0, min(h, d - h))
                    for j in range(both):
                        a0 = X[r, j] * signs[j]
                        a1 = X[r, j + h] * signs[j + h]
                        b[j] = a0 + a1
                        b[j + h] = a0 - a1
                    for j in range(both, min(h, d)):
                        a0 = X[r, j] * signs[j]
                        b[j] = a0
                        b[j + h] = a0
                    for j in range(min(h, d), h):
                        b[j] = 0.0
                        b[j + h] = 0.0
                    done = 1
                while done + 2 <= m:  # two levels (strides h and 2h) per pass
                    h = p >> (done + 2)
                    for i in range(0, p, 4 * h):
                        for j in range(i, i + h):
                            t0 = b[j] + b[j + h]
                            t1 = b[j] - b[j + h]
                            t2 = b[j + 2 * h] + b[j + 3 * h]
                            t3 = b[j + 2 * h] - b[j + 3 * h]
                            b[j] = t0 + t2
                            b[j + 2 * h] = t0 - t2
                            b[j + h] = t1 + t3
                            b[j + 3 * h] = t1 - t3
                    done += 2
                if done < m:
                    h = p >> (done + 1)
                    for i in range(0, p, 2 * h):
                        for j in range(i, i + h):
                            a0 = b[j]
                            a1 = b[j + h]
                            b[j] = a0 + a1
                            b[j + h] = a0 - a1
                for c in range(k):
                    base = hi[c] * L
                    s = 0.0
                    for j in range(L):
                        s += table[c, j] * b[base + j]
                    out[r, c] = s
        return out


def apply(
    X: np.ndarray, signs: np.ndarray, plan: tuple[int, np.ndarray, np.ndarray], threads: int | None = None
) -> np.ndarray:
    """(n, d) float32/float64 -> (n, k) in X's dtype, on ``threads`` threads (default:
    numba's, the number of cores)."""
    if not AVAILABLE:
        raise ImportError("the compiled SRHT needs numba: pip install -e '.[fast]'")
    m, hi, table = plan
    X = np.ascontiguousarray(X)
    n_threads = numba.config.NUMBA_NUM_THREADS if threads is None else int(threads)
    n_threads = max(1, min(n_threads, numba.config.NUMBA_NUM_THREADS))
    # numba's OpenMP threading layer and torch share one OpenMP thread count: give torch's back
    torch_threads = torch.get_num_threads()
    try:
        numba.set_num_threads(n_threads)
        return _srht(X, np.ascontiguousarray(signs, dtype=X.dtype), hi, table.astype(X.dtype, copy=False), m, n_threads)
    finally:
        torch.set_num_threads(torch_threads)
