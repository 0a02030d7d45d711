"""Theorem 1's trap (Appendix A.1): a dataset on which direct optimization of the max
distortion has bad strict local minima, the matrices c [U | 0] with U orthogonal.

The first k coordinates of a point are e_i or e_i + e_j (i < j); the last coordinate is one
of four completions, +-a ||x|| and +-b ||x||. At A = c [I | 0] every point has
||A x||^2 / ||x||^2 = c^2 / (1 + a^2) or c^2 / (1 + b^2). The constants are chosen so that
these two ratios are 1 - t and 1 + t: every point is distorted by exactly ``t``, half of them
too short and half too long, with both signs of the last coordinate present. A perturbation
[c I + P | v] changes ||A x||^2 to first order by 2 c (x^T P x +- a ||x|| x^T v) (and the
same with b): whatever P and v are (apart from a rotation, P skew), some point gets worse.
So c [U | 0] is a strict local minimum with max distortion ``t``, while the sampler, which
does not start there, can go around it.

The paper states the completions for a norm distortion (sqrt(15) and sqrt(7)/3 with c = 2
balance ||A x|| / ||x|| at 1/2 and 3/2). jl_lightning measures the squared-norm distortion
|| A x||^2 / ||x||^2 - 1, so the constants here balance that one: with c = 2 and t = 1/2,
a = sqrt(7) and b = sqrt(5/3). Same construction, same proof, the definition we report.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from jl_lightning.constraints import Number, check
from jl_lightning.errors import JLInputError


def trap_completions(scale: float, distortion: float) -> tuple[float, float]:
    """(a, b): the last-coordinate factors that put c [I | 0] at ratio 1 - t and 1 + t."""
    if not 0 < distortion < 1:
        raise JLInputError(f"data.source.distortion must be in (0, 1), got {distortion!r}")
    if not scale**2 > 1 + distortion:
        raise JLInputError(
            f"data.source.scale must satisfy scale^2 > 1 + distortion, got scale={scale!r} "
            f"and distortion={distortion!r}"
        )
    return math.sqrt(scale**2 / (1 - distortion) - 1), math.sqrt(scale**2 / (1 + distortion) - 1)


def trap_points(k: int, scale: float = 2.0, distortion: float = 0.5) -> np.ndarray:
    """The 2 k (k + 1) points of Theorem 1's construction, shape (2 k (k + 1), k + 1)."""
    check("data.source.k", k, Number(low=2, integer=True))
    a, b = trap_completions(scale, distortion)
    heads = [np.eye(k)[i] for i in range(k)]
    heads += [np.eye(k)[i] + np.eye(k)[j] for i, j in itertools.combinations(range(k), 2)]
    rows = []
    for head in heads:
        norm = np.linalg.norm(head)
        for last in (a * norm, -a * norm, b * norm, -b * norm):
            rows.append(np.append(head, last))
    return np.asarray(rows)


def trap_matrix(k: int, dim: int, scale: float = 2.0) -> np.ndarray:
    """scale [I_k | 0], shape (k, dim): the trap's local minimum (U = I)."""
    if dim < k:
        raise JLInputError(f"the trap matrix scale [I | 0] needs d >= k, got k={k} and d={dim}")
    return scale * np.eye(k, dim)
