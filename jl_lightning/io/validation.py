"""Check a points array before any training and bring it to unit norm."""

from __future__ import annotations

import logging
import os
import warnings

import numpy as np

from jl_lightning.constraints import POSITIVE_INT, Number, check
from jl_lightning.core.pairs import center as center_points
from jl_lightning.errors import JLInputError, JLInputTypeError
from jl_lightning.sparse_rows import SparseRows, dense_rows, is_sparse


class ZeroRowsWarning(UserWarning):
    """Norms mode found zero rows: they are left out (their distortion is undefined)."""


def row_norms(points: np.ndarray) -> np.ndarray:
    """||x_i|| for each row, without overflow or underflow: rows whose largest entry lies
    outside [1e-150, 1e150] are scaled by a power of 2 first (exact), the others computed as usual."""
    with np.errstate(over="ignore", under="ignore"):  # the risky rows are redone below
        norms = np.linalg.norm(points, axis=1)
    peak = np.abs(points).max(axis=1)
    risky = (peak > 1e150) | ((peak > 0) & (peak < 1e-150))
    if risky.any():
        scale = 2.0 ** np.round(np.log2(peak[risky]))
        norms[risky] = np.linalg.norm(points[risky] / scale[:, None], axis=1) * scale
    return norms


def check_array(
    values, source: str, *, dim: int | None = None, first_row: int = 0, expected_by: str = "the matrix"
) -> np.ndarray:
    """The one check of an array of vectors, for every entry that takes one (``jl-train``'s
    data, ``JLEmbedding.fit`` and ``transform``, each chunk of ``jl-embed``): a dense 2-D array
    of real numbers (bool, integer or float; an object array is converted), not empty, every
    entry finite, and of ``dim`` columns when given (``expected_by`` names what expects them).
    Returns it as a numpy array (float32 stays float32, a memory map stays a memory map);
    raises :class:`JLInputError` naming ``source`` and the first bad row (counted from
    ``first_row``) otherwise. The messages use scikit-learn's words where it has them
    ("Complex data not supported", "Reshape your data", "X has 3 features, but ... is
    expecting 4 features as input"), so ``JLEmbedding`` passes its estimator checks."""
    if is_sparse(values):
        raise JLInputError(f"{source}: sparse input is not supported here; pass a dense array (X.toarray())")
    try:
        array = np.asanyarray(values)
    except Exception as err:
        raise JLInputError(f"{source}: could not read as an array of numbers ({type(err).__name__}: {err})") from None
    if np.iscomplexobj(array):
        raise JLInputError(f"{source}: Complex data not supported; expected real numbers, got dtype {array.dtype}")
    if array.dtype == object:  # numbers held as Python objects: convert, as numpy would
        try:
            array = array.astype(np.float64)
        except TypeError as err:
            raise JLInputTypeError(f"{source}: expected numbers, got an object that is not one ({err})") from None
        except ValueError as err:
            raise JLInputError(f"{source}: expected numbers ({err})") from None
    if not (
        np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_
    ):
        raise JLInputError(f"{source}: expected an array of numbers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise JLInputError(
            f"{source}: expected a 2-D array (n points x d features), got shape {array.shape}"
            + ("; Reshape your data with X.reshape(1, -1) for one vector" if array.ndim == 1 else "")
        )
    if array.shape[0] == 0:
        raise JLInputError(
            f"{source}: the array is empty: 0 sample(s) (shape={array.shape}) while a minimum of 1 is required."
        )
    if array.shape[1] == 0:
        raise JLInputError(
            f"{source}: the array is empty: 0 feature(s) (shape={array.shape}) while a minimum of 1 is required."
        )
    if dim is not None and array.shape[1] != dim:
        raise JLInputError(
            f"{source}: X has {array.shape[1]} features, but {expected_by} is expecting {dim} "
            f"features as input (dimension d={dim}; got shape {array.shape})"
        )
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array).all(axis=1)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            bad = "NaN" if np.isnan(array[row]).any() else "inf"
            raise JLInputError(
                f"{source}: row {first_row + row} (0-based) contains {bad}; "
                f"{int((~finite).sum())} row(s) are not finite"
            )
    return array


def check_sparse(values, source: str, *, dim: int | None = None, first_row: int = 0, expected_by: str = "the matrix"):
    """:func:`check_array`'s checks for a scipy.sparse matrix or array (CSR, CSC, COO, ...):
    real numbers, 2-D, not empty, every stored entry finite, ``dim`` columns when given.
    Returns it as a CSR matrix of its own float dtype (float32 stays float32, anything else
    becomes float64), rows in order, nothing densified."""
    # lazy: scipy is an optional extra, and a caller with sparse input has it
    import scipy.sparse as sp  # noqa: PLC0415

    matrix = values.matrix if isinstance(values, SparseRows) else sp.csr_matrix(values)
    if np.iscomplexobj(matrix.data):
        raise JLInputError(f"{source}: Complex data not supported; expected real numbers, got dtype {matrix.dtype}")
    if not (np.issubdtype(matrix.dtype, np.number) or matrix.dtype == np.bool_):
        raise JLInputError(f"{source}: expected a sparse matrix of numbers, got dtype {matrix.dtype}")
    n, d = matrix.shape
    if n == 0 or d == 0:
        what = "sample" if n == 0 else "feature"
        raise JLInputError(
            f"{source}: the array is empty: 0 {what}(s) (shape={matrix.shape}) while a minimum of 1 is required."
        )
    if dim is not None and d != dim:
        raise JLInputError(
            f"{source}: X has {d} features, but {expected_by} is expecting {dim} "
            f"features as input (dimension d={dim}; got shape {matrix.shape})"
        )
    matrix = matrix.astype(np.float32 if matrix.dtype == np.float32 else np.float64, copy=False)
    bad = ~np.isfinite(matrix.data)
    if bad.any():
        position = int(np.flatnonzero(bad)[0])
        row = int(np.searchsorted(matrix.indptr, position, side="right")) - 1
        rows = len(np.unique(np.searchsorted(matrix.indptr, np.flatnonzero(bad), side="right")))
        kind = "NaN" if np.isnan(matrix.data[position]) else "inf"
        raise JLInputError(f"{source}: row {first_row + row} (0-based) contains {kind}; {rows} row(s) are not finite")
    return matrix


def check_rows(values, source: str, **expected):
    """:func:`check_sparse` for scipy.sparse rows (kept sparse), :func:`check_array` for anything else."""
    return check_sparse(values, source, **expected) if is_sparse(values) else check_array(values, source, **expected)


def check_fits(out: np.ndarray, source: str, first_row: int = 0, hint: str = "") -> np.ndarray:
    """``out`` (embedded vectors) unchanged, or :class:`JLInputError` naming the first row whose
    image overflowed its dtype (float32 holds up to about 3.4e38)."""
    fits = np.isfinite(out).all(axis=-1)
    if not np.all(fits):
        row = int(np.flatnonzero(~np.atleast_1d(fits))[0])
        raise JLInputError(
            f"{source}: row {first_row + row} (0-based): its embedded vector does not fit {out.dtype} (too large){hint}"
        )
    return out


def _drop_zero_rows(points: np.ndarray, norms: np.ndarray, zero: np.ndarray, source: str):
    """Norms mode: the rows that are not the zero vector, with a :class:`ZeroRowsWarning` (any
    linear map sends 0 to 0, and |‖Ax‖²/‖x‖² − 1| is undefined there: nothing to learn from such
    a row, as pairs at distance 0 are left out in pairs mode); all zero is refused."""
    row, count = int(np.flatnonzero(zero)[0]), int(zero.sum())
    if count == len(points):
        raise JLInputError(f"{source}: all {count} rows are the zero vector; norms mode needs a nonzero point")
    message = (
        f"{source}: {count} zero row(s) (the first: row {row}, 0-based) left out: a linear map sends 0 "
        "to 0, and the distortion |‖Ax‖²/‖x‖² − 1| is undefined there"
    )
    warnings.warn(message, ZeroRowsWarning, stacklevel=4)  # the caller of validate_points
    logging.getLogger("jl_lightning").warning("%s", message)
    return points[~zero], norms[~zero], zero[~zero]


def validate_points(points: np.ndarray, source: str, normalize: bool = True, mode: str = "norms",
                    center: bool = False, return_scale: bool = False):  # fmt: skip
    """Return ``points`` as a float64 (n, d) array: centered when ``center``, then unit-normed
    when ``normalize``.

    Without normalization (pairs mode by default) the points are divided by their largest
    absolute entry, the *data scale*. Distortion ratios do not depend on scale, so a matrix
    learned on them is exact for the original data; any magnitude float64 holds trains
    without overflow or underflow; and s X gives the same points as X to a float64 rounding,
    so the same float32 training data and the same result, whatever s. With
    ``return_scale``, returns ``(points, scale)``.

    In norms mode, zero rows are left out with a :class:`ZeroRowsWarning` (a linear map
    sends 0 to 0, and the distortion is undefined there). Raises :class:`JLInputError`
    naming ``source`` (a file path or a description) for what :func:`check_array` refuses,
    a row of zero norm when normalizing in pairs mode, only zero rows, and fewer than 2
    distinct points in pairs mode.
    """
    if is_sparse(points):
        return _validate_sparse(points, source, normalize, mode, center, return_scale)
    points = check_array(points, source)
    n, d = points.shape
    points = np.asarray(points).astype(np.float64, copy=False)
    if mode == "pairs" and n < 2:
        raise JLInputError(f"{source}: pairs mode needs at least 2 points, got {n}")
    scale = 1.0
    if not normalize:
        peak = float(np.abs(points).max())
        if peak > 0:
            scale = peak
            points = points / scale
    if center:
        points = center_points(points)
    if mode == "pairs" and not (points != points[0]).any():
        raise JLInputError(
            f"{source}: all {n} points are identical; pairs mode needs at least 2 distinct "
            "points (every pair is at distance 0)"
        )
    points = _unit_norms(points, row_norms(points), source, mode, normalize)
    return (points, scale) if return_scale else points


def _unit_norms(points, norms: np.ndarray, source: str, mode: str, normalize: bool):
    """``points`` (dense or :class:`SparseRows`) with zero rows left out in norms mode, and
    scaled to unit norm when ``normalize`` (a zero row then refused)."""
    zero = norms == 0
    if zero.any() and mode == "norms":
        points, norms, zero = _drop_zero_rows(points, norms, zero, source)
    if zero.any() and normalize:
        row = int(np.flatnonzero(zero)[0])
        raise JLInputError(
            f"{source}: row {row} (0-based) has zero norm and cannot be normalized "
            f"({int(zero.sum())} such row(s)); remove it or set data.normalize=false"
        )
    if not normalize:
        return points
    return points.scaled_rows(1.0 / norms) if isinstance(points, SparseRows) else points / norms[:, None]


def _validate_sparse(points, source: str, normalize: bool, mode: str, center: bool, return_scale: bool):
    """:func:`validate_points` for scipy.sparse rows: the same checks and scaling, as
    :class:`SparseRows` of float64, never densified. Centering would densify them and is refused."""
    # lazy: scipy is needed only where sparse data is
    import scipy.sparse as sp  # noqa: PLC0415

    matrix = check_sparse(points, source).astype(np.float64)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    rows = SparseRows(matrix)
    n = len(rows)
    if center:
        raise JLInputError(
            f"{source}: data.center=true would make the sparse rows dense; pair distances do not "
            "depend on it (leave data.center=false)"
        )
    if mode == "pairs" and n < 2:
        raise JLInputError(f"{source}: pairs mode needs at least 2 points, got {n}")
    scale = 1.0
    if not normalize:
        peak = rows.abs_max()
        if peak > 0:
            scale = peak
            rows = rows / scale
    if mode == "pairs" and (rows.matrix - sp.csr_matrix(np.ones((n, 1))) @ rows.matrix[0]).count_nonzero() == 0:
        raise JLInputError(
            f"{source}: all {n} points are identical; pairs mode needs at least 2 distinct "
            "points (every pair is at distance 0)"
        )
    rows = _unit_norms(rows, np.sqrt(rows.sq_norms()), source, mode, normalize)
    return (rows, scale) if return_scale else rows


DUPLICATE_CHUNK = 65536  # rows hashed at a time


def _hash_multipliers(d: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 2**63, size=d, dtype=np.uint64) * 2 + 1


def _sparse_row_keys(rows: SparseRows) -> np.ndarray:
    """The dense rows' hash keys from the stored entries alone (a zero's bits add nothing):
    equal rows, sparse or dense, get equal keys."""
    matrix = rows.matrix
    data = matrix.data.astype(np.float64) + 0.0
    with np.errstate(over="ignore"):
        terms = data.view(np.uint64) * _hash_multipliers(matrix.shape[1])[matrix.indices]
        sums = np.cumsum(np.concatenate([np.zeros(1, np.uint64), terms]), dtype=np.uint64)
    return sums[matrix.indptr[1:]] - sums[matrix.indptr[:-1]]


def duplicate_rows(points: np.ndarray, heartbeat=None) -> tuple[int, int]:
    """(rows that repeat an earlier row, pairs at zero distance) of ``points``.

    Each row's bits are hashed exactly (an integer dot product with random odd 64-bit
    multipliers, wrapping modulo 2^64), chunk by chunk, so equal rows always share a hash; rows
    that share one are then compared value by value. O(n d) with bounded temporaries;
    ``heartbeat.tick(rows_done)`` (``metrics/heartbeat.Heartbeat``) after each chunk."""
    if isinstance(points, SparseRows):
        keys = _sparse_row_keys(points)
        if heartbeat is not None:
            heartbeat.tick(len(points))
    else:
        points = np.ascontiguousarray(points + 0.0)  # -0.0 becomes 0.0: equal values, equal bits
        bits = points.view(np.uint64 if points.itemsize == 8 else np.uint32)
        multipliers = _hash_multipliers(points.shape[1])
        keys = np.empty(len(points), dtype=np.uint64)
        with np.errstate(over="ignore"):
            for start in range(0, len(points), DUPLICATE_CHUNK):
                keys[start : start + DUPLICATE_CHUNK] = (
                    bits[start : start + DUPLICATE_CHUNK].astype(np.uint64) * multipliers
                ).sum(1)
                if heartbeat is not None:
                    heartbeat.tick(min(start + DUPLICATE_CHUNK, len(points)))
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    shared = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    if not len(shared):
        return 0, 0
    rows = pairs = 0
    runs = np.unique(np.concatenate([shared, shared + 1]))  # positions of every row in a run of equal hashes
    for group in np.split(order[runs], np.flatnonzero(sorted_keys[runs][1:] != sorted_keys[runs][:-1]) + 1):
        _, counts = np.unique(dense_rows(points[group]), axis=0, return_counts=True)
        repeated = counts[counts > 1]
        rows += int((repeated - 1).sum())
        pairs += int((repeated * (repeated - 1) // 2).sum())
    return rows, pairs


def split_indices(
    n: int, val_fraction: float, seed: int, min_train: int, name: str = "data.val_fraction"
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, held-out) index arrays, disjoint and covering 0..n-1, both sorted."""
    check(name, val_fraction, Number(low=0, high=1, high_open=True))
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n_val == 0:
        n_val = 1
    if n - n_val < min_train:
        raise JLInputError(
            f"{name}={val_fraction} leaves {n - n_val} training point(s) of {n}; need at least {min_train}"
        )
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def validate_k(k, d: int) -> int:
    """``model.k`` must be an integer in [1, d]."""
    k = check("model.k", k, POSITIVE_INT)
    if k > d:
        raise JLInputError(f"model.k={k} exceeds the data dimension d={d}; a JL embedding maps to k <= d dimensions")
    return int(k)


def positive_int(option: str, value, allow_none: bool = False) -> int | None:
    """``value`` as an int when it is a positive integer (or None with ``allow_none``);
    otherwise :class:`JLInputError` naming ``option`` as the user writes it."""
    return check(option, value, Number(low=1, integer=True, none=allow_none))


# threads= beyond this many per core only oversubscribe (and past the OpenMP runtime's own
# limit, abort the process inside it)
MAX_THREADS_PER_CORE = 4


def run_options(cfg) -> tuple[int, int | None]:
    """The top-level options every run reads, checked under their own names: ``seed`` (an
    integer in [0, 2^32)), ``threads`` (null or a positive integer), ``log_every`` (a positive
    integer) and ``optimizer.lr`` (> 0: a rate of 0 can never train; or auto). Returns (seed, threads)."""
    seed = cfg.get("seed")
    check("seed", seed, Number(low=0, high=2**32, high_open=True, integer=True, what="an integer in [0, 2^32)"))
    threads = positive_int("threads", cfg.get("threads"), allow_none=True)
    most = MAX_THREADS_PER_CORE * (os.cpu_count() or 1)
    if threads is not None and threads > most:
        raise JLInputError(
            f"threads={threads} is more than {MAX_THREADS_PER_CORE} per core of this machine's "
            f"{os.cpu_count()} (at most {most}); null uses one per core"
        )
    if "log_every" in cfg:
        positive_int("log_every", cfg.get("log_every"))
    optimizer = cfg.get("optimizer") or {}
    lr = optimizer.get("lr") if hasattr(optimizer, "get") else None
    if lr != "auto":  # auto: chosen when the fit starts (core/plan.py)
        check("optimizer.lr", lr, Number(low=0, low_open=True, none=True, what="a number > 0 or auto"))
    return int(seed), threads
