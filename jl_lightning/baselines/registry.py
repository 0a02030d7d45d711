"""The reference methods, in one registry: name -> how a map is drawn or fitted, and what it costs.

Training runs (``baseline.methods``: ``references.reference_figures`` through the
``ReferenceLines`` callback), ``jl-compare`` (``compare.methods``) and the figures all read
:data:`REFERENCES`; a new reference is one entry here.

Two kinds:

* ``random``: a construction drawn independently many times (``draw(k, d, generator,
  density)``), each draw measured exactly; reported as mean, best and spread.
* ``fitted``: one map fitted to the points (``fit(points, k, **options)`` -> :class:`Fitted`);
  reported plain and with its best single scale.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from jl_lightning.baselines.numax import numax_for_k
from jl_lightning.baselines.random_maps import (
    SRHT,
    gaussian_matrix,
    rademacher_matrix,
    sparse_matrix,
)
from jl_lightning.errors import JLInputError


@dataclass
class Fitted:
    """A fitted reference map: ``matrix`` (k, d); ``scaled``: it already carries its best
    single scale (no plain row); ``info``: the method's own figures, for the log and summary."""

    matrix: np.ndarray
    seconds: float
    scaled: bool = False
    info: dict = field(default_factory=dict)


def pca_matrix(points, k: int) -> np.ndarray:
    """The top-k principal directions (rows) of the centered data, shape (k, d)."""
    X = np.asarray(points, dtype=np.float64)
    if not 1 <= k <= min(X.shape):
        raise ValueError(f"PCA needs 1 <= k <= min(n, d) = {min(X.shape)}, got k={k}")
    _, _, vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
    return vt[:k]


def _fit_pca(points, k: int, **_options) -> Fitted:
    began = time.perf_counter()
    matrix = pca_matrix(points, k)
    return Fitted(matrix, time.perf_counter() - began)


def _fit_numax(points, k: int, **options) -> Fitted:
    result = numax_for_k(points, k, **options)
    matrix = result.pop("matrix")
    result.pop("tried", None)
    return Fitted(matrix, result["seconds"], scaled=True, info=result)


@dataclass(frozen=True)
class Reference:
    """One reference method. ``kind``: ``random`` or ``fitted``; ``pairs_only``: it preserves
    pairwise distances and has no norms-mode counterpart; ``cost``: what measuring it costs."""

    name: str
    kind: str
    cost: str
    pairs_only: bool = False
    draw: Callable[..., Any] | None = None
    fit: Callable[..., Fitted] | None = None


REFERENCES: dict[str, Reference] = {
    r.name: r
    for r in (
        Reference(
            "gaussian",
            "random",
            "per draw: k*d normals and one exact pass (16 draws share a pass)",
            draw=lambda k, d, gen, density: gaussian_matrix(k, d, gen),
        ),
        Reference(
            "rademacher",
            "random",
            "per draw: k*d signs and one exact pass",
            draw=lambda k, d, gen, density: rademacher_matrix(k, d, gen),
        ),
        Reference(
            "sparse",
            "random",
            "per draw: about k*sqrt(d) nonzeros and one exact pass",
            draw=lambda k, d, gen, density: sparse_matrix(k, d, gen, density),
        ),
        Reference(
            "srht",
            "random",
            "per draw: signs, k sampled rows and one exact pass through a fast transform",
            draw=lambda k, d, gen, density: SRHT(k, d, gen),
        ),
        Reference("pca", "fitted", "one SVD of the centered points and one exact pass", fit=_fit_pca),
        Reference(
            "numax",
            "fitted",
            "a few minutes at digits' size: a convex program solved several times (cvxpy)",
            pairs_only=True,
            fit=_fit_numax,
        ),
    )
}
RANDOM_METHODS = tuple(name for name, r in REFERENCES.items() if r.kind == "random")


def random_map(method: str, k: int, d: int, generator: torch.Generator, density="auto"):
    """One draw of a random construction, by name."""
    reference = REFERENCES.get(method)
    if reference is None or reference.kind != "random":
        raise ValueError(f"unknown method {method!r}; expected one of {RANDOM_METHODS}")
    return reference.draw(k, d, generator, density)


def check_methods(methods, option: str, mode: str | None = None) -> list[str]:
    """``methods`` as a list, each a registered reference (and none that needs pairs in norms
    ``mode``); else a ``JLInputError`` naming ``option`` and the choices."""
    methods = list(methods)
    unknown = [m for m in methods if m not in REFERENCES]
    if unknown:
        raise JLInputError(f"{option}: unknown {unknown}; choose from {list(REFERENCES)}")
    if mode is not None and mode != "pairs":
        pairs_only = [m for m in methods if REFERENCES[m].pairs_only]
        if pairs_only:
            raise JLInputError(
                f"{option}: {', '.join(pairs_only)} preserves pairwise distances; it needs model.mode=pairs"
            )
    return methods
