"""Check a points array before any training and bring it to unit norm."""

from __future__ import annotations

import numpy as np

from jl_lightning.core.pairs import center as center_points
from jl_lightning.errors import JLInputError


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


def check_array(values, source: str, *, dim: int | None = None, first_row: int = 0) -> np.ndarray:
    """The one check of an array of vectors, for every entry that takes one (``jl-train``'s
    data, ``JLEmbedding.fit`` and ``transform``, each chunk of ``jl-embed``): a dense 2-D array
    of real numbers (bool, integer or float), not empty, every entry finite, and of ``dim``
    columns when given. Returns it as a numpy array (float32 stays float32, a memory map stays
    a memory map); raises :class:`JLInputError` naming ``source`` and the first bad row
    (counted from ``first_row``) otherwise."""
    if hasattr(values, "toarray") or type(values).__module__.startswith("scipy.sparse"):
        raise JLInputError(f"{source}: sparse input is not supported; pass a dense array (X.toarray())")
    try:
        array = np.asanyarray(values)
    except Exception as err:
        raise JLInputError(f"{source}: could not read as an array of numbers ({type(err).__name__}: {err})") from None
    if np.iscomplexobj(array):
        raise JLInputError(f"{source}: expected real numbers, got complex dtype {array.dtype}")
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)
            or array.dtype == np.bool_):
        raise JLInputError(f"{source}: expected an array of numbers, got dtype {array.dtype}")
    if array.ndim != 2:
        raise JLInputError(f"{source}: expected a 2-D array (n points x d features), got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise JLInputError(f"{source}: the array is empty (shape {array.shape}); need at least one point")
    if dim is not None and array.shape[1] != dim:
        raise JLInputError(f"{source}: expected vectors of dimension d={dim} (an array of shape (m, {dim})), "
                           f"got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array).all(axis=1)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            bad = "NaN" if np.isnan(array[row]).any() else "Inf"
            raise JLInputError(f"{source}: row {first_row + row} (0-based) contains {bad}; "
                               f"{int((~finite).sum())} row(s) are not finite")
    return array


def check_fits(out: np.ndarray, source: str, first_row: int = 0, hint: str = "") -> np.ndarray:
    """``out`` (embedded vectors) unchanged, or :class:`JLInputError` naming the first row whose
    image overflowed its dtype (float32 holds up to about 3.4e38)."""
    fits = np.isfinite(out).all(axis=-1)
    if not np.all(fits):
        row = int(np.flatnonzero(~np.atleast_1d(fits))[0])
        raise JLInputError(f"{source}: row {first_row + row} (0-based): its embedded vector does not fit "
                           f"{out.dtype} (too large){hint}")
    return out


def validate_points(points: np.ndarray, source: str, normalize: bool = True, mode: str = "norms",
                    center: bool = False, return_scale: bool = False):
    """Return ``points`` as a float64 (n, d) array: centered when ``center``, then unit-normed
    when ``normalize``.

    Without normalization (pairs mode by default) the points are divided by their largest
    absolute entry, the *data scale*. Distortion ratios do not depend on scale, so a matrix
    learned on them is exact for the original data; any magnitude float64 holds trains
    without overflow or underflow; and s X gives the same points as X to a float64 rounding,
    so the same float32 training data and the same result, whatever s. With
    ``return_scale``, returns ``(points, scale)``.

    Raises :class:`JLInputError` naming ``source`` (a file path or a description)
    for a 1-D or empty array, NaN or Inf (with the first bad row), a row of zero norm
    when normalizing or in norms mode (its distortion is undefined), and fewer than
    2 distinct points in pairs mode.
    """
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
        raise JLInputError(f"{source}: all {n} points are identical; pairs mode needs at least 2 distinct "
                           "points (every pair is at distance 0)")
    norms = row_norms(points)
    zero = norms == 0
    if zero.any() and (normalize or mode == "norms"):
        row = int(np.flatnonzero(zero)[0])
        if normalize:
            raise JLInputError(
                f"{source}: row {row} (0-based) has zero norm and cannot be normalized "
                f"({int(zero.sum())} such row(s)); remove it or set data.normalize=false"
            )
        raise JLInputError(
            f"{source}: row {row} (0-based) is the zero vector; its distortion |‖Ax‖²/‖x‖² − 1| is undefined"
        )
    if normalize:
        points = points / norms[:, None]
    return (points, scale) if return_scale else points


def duplicate_rows(points: np.ndarray) -> tuple[int, int]:
    """(rows that repeat an earlier row, pairs at zero distance) of ``points``."""
    _, counts = np.unique(points, axis=0, return_counts=True)
    repeated = counts[counts > 1]
    return int((repeated - 1).sum()), int((repeated * (repeated - 1) // 2).sum())


def split_indices(n: int, val_fraction: float, seed: int, min_train: int,
                  name: str = "data.val_fraction") -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train, held-out) index arrays, disjoint and covering 0..n-1, both sorted."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise JLInputError(f"{name} must be a number in [0, 1), got {val_fraction!r}")
    n_val = int(round(val_fraction * n))
    if val_fraction > 0 and n_val == 0:
        n_val = 1
    if n - n_val < min_train:
        raise JLInputError(f"{name}={val_fraction} leaves {n - n_val} training point(s) of {n}; "
                           f"need at least {min_train}")
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def validate_k(k, d: int) -> int:
    """``model.k`` must be an integer in [1, d]."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise JLInputError(f"model.k must be a positive integer, got {k!r}")
    if k <= 0:
        raise JLInputError(f"model.k must be a positive integer, got {k}")
    if k > d:
        raise JLInputError(
            f"model.k={k} exceeds the data dimension d={d}; a JL embedding maps to k <= d dimensions"
        )
    return int(k)


def positive_int(option: str, value, allow_none: bool = False) -> int | None:
    """``value`` as an int when it is a positive integer (or None with ``allow_none``);
    otherwise :class:`JLInputError` naming ``option`` as the user writes it."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        expected = "a positive integer" + (" or null" if allow_none else "")
        raise JLInputError(f"{option} must be {expected}, got {value!r}")
    return int(value)


def run_options(cfg) -> tuple[int, int | None]:
    """The top-level options every run reads, checked under their own names: ``seed`` (an
    integer in [0, 2^32)), ``threads`` (null or a positive integer), ``log_every`` (a positive
    integer) and ``optimizer.lr`` (> 0: a rate of 0 can never train). Returns (seed, threads)."""
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 32:
        raise JLInputError(f"seed must be an integer in [0, 2^32), got {seed!r}")
    threads = positive_int("threads", cfg.get("threads"), allow_none=True)
    if "log_every" in cfg:
        positive_int("log_every", cfg.get("log_every"))
    optimizer = cfg.get("optimizer") or {}
    lr = optimizer.get("lr") if hasattr(optimizer, "get") else None
    if lr is not None and (isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0):
        raise JLInputError(f"optimizer.lr must be a number > 0, got {lr!r}")
    return int(seed), threads
