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
from jl_lightning.baselines.pca_metric import pca_metric
from jl_lightning.baselines.random_maps import (
    SRHT,
    gaussian_matrix,
    rademacher_matrix,
    sparse_matrix,
)
from jl_lightning.errors import JLInputError
from jl_lightning.sparse_rows import SparseRows


@dataclass
class Fitted:
    """A fitted reference map: ``matrix`` (k, d); ``scaled``: it already carries its best
    single scale (no plain row); ``info``: the method's own figures, for the log and summary."""

    matrix: np.ndarray
    seconds: float
    scaled: bool = False
    info: dict = field(default_factory=dict)


def pca_matrix(points, k: int) -> np.ndarray:
    """The top-k principal directions (rows) of the centered data, shape (k, d). Sparse rows
    are centered implicitly (:func:`_sparse_pca`), never densified."""
    if not 1 <= k <= min(points.shape):
        raise ValueError(f"PCA needs 1 <= k <= min(n, d) = {min(points.shape)}, got k={k}")
    if isinstance(points, SparseRows):
        return _sparse_pca(points, k)
    X = np.asarray(points, dtype=np.float64)
    _, _, vt = np.linalg.svd(X - X.mean(0), full_matrices=False)
    return vt[:k]


def _sparse_pca(points: SparseRows, k: int) -> np.ndarray:
    """PCA of sparse rows: the top-k right singular vectors of X - 1 mu^T, by scipy's ARPACK on
    an operator that applies X and subtracts the mean's part (scikit-learn's PCA does the same
    for sparse input); where k is too close to min(n, d) for ARPACK, the small Gram matrix."""
    # lazy: scipy is needed only where sparse data is
    from scipy.sparse.linalg import LinearOperator, svds  # noqa: PLC0415

    X = points.matrix.astype(np.float64)
    n, d = X.shape
    mu = np.asarray(X.mean(axis=0)).ravel()
    if k >= min(n, d) - 1:
        gram = (X.T @ X).toarray() - n * np.outer(mu, mu) if d <= n else None
        if gram is None:  # n < d: right singular vectors from the n x n Gram matrix
            x_mu = X @ mu
            small = (X @ X.T).toarray() - x_mu[:, None] - x_mu[None, :] + mu @ mu
            values, vectors = np.linalg.eigh(small)
            order = np.argsort(values)[::-1][:k]
            V = vectors[:, order] / np.sqrt(np.maximum(values[order], np.finfo(float).tiny))
            return np.asarray(X.T @ V - np.outer(mu, V.sum(0))).T  # X_c^T v / sqrt(lambda): orthonormal
        values, vectors = np.linalg.eigh(gram)
        return vectors[:, np.argsort(values)[::-1][:k]].T
    centered = LinearOperator(
        (n, d),
        matvec=lambda v: X @ np.ravel(v) - mu @ np.ravel(v),
        rmatvec=lambda u: X.T @ np.ravel(u) - mu * np.sum(u),
        dtype=np.float64,
    )
    _, singular, vt = svds(centered, k=k, random_state=0)
    return vt[np.argsort(singular)[::-1]]


def _fit_pca(points, k: int, **_options) -> Fitted:
    began = time.perf_counter()
    matrix = pca_matrix(points, k)
    return Fitted(matrix, time.perf_counter() - began)


def _fit_numax(points, k: int, **options) -> Fitted:
    result = numax_for_k(points, k, **options)
    matrix = result.pop("matrix")
    result.pop("tried", None)
    return Fitted(matrix, result["seconds"], scaled=True, info=result)


def _fit_pca_metric(points, k: int, pairs: int = 20000, rounds: int = 10, **_options) -> Fitted:
    """PCA's row space with the LP's best metric (``baselines/pca_metric.py``); the map is
    the best certified one, so it carries its scale."""
    began = time.perf_counter()
    result = pca_metric(points, pca_matrix(points, k).T, pairs=pairs, rounds=rounds)
    info = {key: result[key] for key in ("bound", "attained", "rounds", "working_pairs")}
    return Fitted(
        result["matrix"], time.perf_counter() - began, scaled=True, info={"epsilon_scaled": result["epsilon"], **info}
    )


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
            "pca_metric",
            "fitted",
            "one SVD, then per round (at most `rounds`) an LP over the working pairs and one exact pass",
            pairs_only=True,
            fit=_fit_pca_metric,
        ),
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
