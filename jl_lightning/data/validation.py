"""Check a points array before any training and bring it to unit norm."""

from __future__ import annotations

import numpy as np

from jl_lightning.errors import JLInputError


def validate_points(points: np.ndarray, source: str, normalize: bool = True) -> np.ndarray:
    """Return ``points`` as a float64 (n, d) array, unit-normed when ``normalize``.

    Raises :class:`JLInputError` naming ``source`` (a file path or a description)
    for a 1-D or empty array, NaN or Inf (with the first bad row), and, when
    normalizing, a row of zero norm.
    """
    points = np.asarray(points)
    if points.ndim != 2:
        raise JLInputError(
            f"{source}: expected a 2-D array (n points x d features), got shape {points.shape}"
        )
    n, d = points.shape
    if n == 0 or d == 0:
        raise JLInputError(f"{source}: the array is empty (shape {points.shape}); need at least one point")
    points = points.astype(np.float64, copy=False)
    finite = np.isfinite(points).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        bad = "NaN" if np.isnan(points[row]).any() else "Inf"
        count = int((~finite).sum())
        raise JLInputError(
            f"{source}: row {row} (0-based) contains {bad}; {count} row(s) are not finite"
        )
    norms = np.linalg.norm(points, axis=1)
    zero = norms == 0
    if zero.any():
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
    return points


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
