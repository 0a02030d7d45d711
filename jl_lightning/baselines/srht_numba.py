"""The compiled SRHT kernel itself (``srht_kernel`` explains it). A module of its own, so
that numba, slow to import, is imported only by the first call that runs the kernel
(``srht_kernel.compiled``), not by every process that imports the baselines."""

from __future__ import annotations

import numba
import numpy as np

# Floating-point freedoms the kernel may take: reassociate the dot products (vectorized
# sums) and fuse multiply-adds. Not 'nnan'/'ninf', so NaN and inf inputs propagate as usual.
_FASTMATH = {"reassoc", "contract", "nsz"}


@numba.njit(parallel=True, fastmath=_FASTMATH, cache=True)
def srht_rows(X, signs, hi, table, m, n_threads):  # pragma: no cover - compiled; covered through srht_kernel.apply()
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
