"""NuMax (Hegde, Sankaranarayanan, Yin, Baraniuk, IEEE TSP 2015): the convex reference.

For points x_1 ... x_n the normalized secants are v = (x_i - x_j) / ||x_i - x_j||. A map Psi
(r x d) is delta-near-isometric on them when |‖Psi v‖² - 1| <= delta for every secant. With
P = Psi^T Psi that is linear in P, and NuMax relaxes the rank of P to its trace:

    minimize trace(P)  subject to  P >= 0 (PSD),  1 - delta <= v^T P v <= 1 + delta  for every secant.

Psi = Lambda_r^{1/2} U_r^T from P = U Lambda U^T, with the r eigenvalues above a relative
threshold (the numerical rank).

**Column generation.** There are n(n - 1)/2 secants, 1.6 million for digits, and no
solver holds them all. :func:`numax` solves on a seeded sample of secants, then checks
every secant under the solution with the exact all-pairs pass (``metrics.evaluate`` of
Lambda^{1/2} U^T: ‖Psi v‖² = v^T P v). It adds the worst violators and solves again, until
no secant violates by more than ``check_tol`` * delta.

**The solver** is the ADMM the NuMax paper uses, written out in numpy (:class:`_ADMM`): a
least-squares step, a d x d eigendecomposition, a clipping step. The least-squares step
uses Woodbury with an m x m matrix for m active secants, so nothing of size d² x d² or
m x d² is formed. A generic conic solver was tried first (cvxpy with SCS: one row vec(v v^T)
per secant). It had not finished one solve at delta = 0.5 on digits (m = 2,000, d = 64)
after 10 minutes. Per round, the cost is one m x m Cholesky plus O(m d² + d³) per
iteration; n enters only through the exact checks, which grow as n².

**A given k** (:func:`numax_for_k`): truncating P(delta) to its top k eigenpairs gives a
k-row map that no longer guarantees delta. Bisection on delta looks for the smallest delta
whose truncated map reaches it (exact epsilon <= delta). The map reported is the best
truncated map met on the way, by exact epsilon, plain and with its best single scale
(as PCA is given).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from jl_lightning.core.pairs import DEFAULT_MEMORY_BUDGET, far_apart, random_pairs
from jl_lightning.metrics.distortion import best_scale, evaluate

RANK_RTOL = 1e-6  # eigenvalues below this fraction of the largest do not count towards the rank


@dataclass
class NumaxSolution:
    """NuMax at one delta: P, its numerical rank, Psi (rank x d), and how it was found."""

    delta: float
    P: np.ndarray
    rank: int
    psi: np.ndarray
    epsilon_all: float  # exact max |v^T P v - 1| over every secant
    secants: int  # secants in the final SDP
    rounds: int  # rounds of column generation
    seconds: float
    eigenvalues: np.ndarray = field(repr=False, default=None)  # of P, ascending
    eigenvectors: np.ndarray = field(repr=False, default=None)  # columns
    iterations: int = 0  # ADMM iterations, all rounds
    secant_rows: np.ndarray = field(repr=False, default=None)  # the final active secants

    def truncated(self, k: int) -> np.ndarray:
        """The k-row map from P's top k eigenpairs (zero rows where the rank is below k)."""
        values, vectors = self.eigenvalues, self.eigenvectors
        top = np.argsort(values)[::-1][:k]
        rows = np.sqrt(np.clip(values[top], 0, None))[:, None] * vectors[:, top].T
        if len(rows) < k:
            rows = np.vstack([rows, np.zeros((k - len(rows), rows.shape[1]))])
        return rows


def secant_rows(points: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Normalized secants (x_i - x_j) / ||x_i - x_j|| as rows, duplicate pairs (``far_apart``) left out."""
    diff = points[i] - points[j]
    sq = (diff**2).sum(1)
    keep = far_apart(sq, (points[i] ** 2).sum(1) + (points[j] ** 2).sum(1))
    return diff[keep] / np.sqrt(sq[keep])[:, None]


def _values(V: np.ndarray, P: np.ndarray) -> np.ndarray:
    """v^T P v for every row v of V (the operator A; never formed as an m x d² matrix)."""
    return np.einsum("md,md->m", V @ P, V)


def _adjoint(V: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A^T y = sum_i y_i v_i v_i^T."""
    return (V * y[:, None]).T @ V


class _ADMM:
    """ADMM on  min trace(L) + [L PSD] + [|q - 1| <= delta]  s.t.  A(P) = q, P = L, with
    scaled duals u (per secant) and W, penalties rho and beta:

    * P: the least-squares step (rho A^T A + beta I) P = rho A^T (q - u) + beta (L - W), by
      Woodbury with the m x m matrix beta I + rho (V V^T)∘(V V^T), inverted once per secant set;
    * L = Proj_PSD(P + W - I / beta) (one d x d eigendecomposition: the trace's prox);
    * q = clip(A(P) + u, 1 - delta, 1 + delta);
    * u += A(P) - q, W += P - L.

    Warm-started across rounds of column generation (new secants start with u = 0)."""

    def __init__(self, d: int, rho: float = 1.0, beta: float = 1.0):
        self.rho, self.beta = rho, beta
        self.L = np.eye(d)
        self.W = np.zeros((d, d))
        self.u = np.zeros(0)

    def solve(self, V: np.ndarray, delta: float, max_iter: int, tol: float) -> tuple[np.ndarray, int]:
        rho, beta = self.rho, self.beta
        self.u = np.concatenate([self.u, np.zeros(len(V) - len(self.u))])
        gram = V @ V.T
        # symmetric positive definite: its inverse once per round, then one matvec an iteration
        inverse = np.linalg.inv(beta * np.eye(len(V)) + rho * gram * gram)
        q = np.clip(_values(V, self.L), 1 - delta, 1 + delta)
        L, W, u = self.L, self.W, self.u
        done = 0
        for done in range(1, max_iter + 1):
            rhs = rho * _adjoint(V, q - u) + beta * (L - W)
            z = inverse @ _values(V, rhs)
            P = (rhs - rho * _adjoint(V, z)) / beta
            values, vectors = np.linalg.eigh((P + W) - np.eye(len(P)) / beta)
            L_new = (vectors * np.clip(values, 0, None)) @ vectors.T
            AP = _values(V, P)
            q = np.clip(AP + u, 1 - delta, 1 + delta)
            u = u + AP - q
            W = W + P - L_new
            change = np.abs(L_new - L).max()
            L = L_new
            if done % 10 == 0 and max(np.abs(AP - q).max(), np.abs(P - L).max(), change) < tol:
                break
        self.L, self.W, self.u = L, W, u
        return (L + L.T) / 2, done


def numax(points, delta: float, initial: int = 1000, add: int = 1000, max_rounds: int = 30, seed: int = 0,
          max_iter: int = 1500, tol: float = 1e-5, check_tol: float = 1e-2, max_secants: int = 6000,
          memory_budget: int = DEFAULT_MEMORY_BUDGET, secants: np.ndarray | None = None) -> NumaxSolution:  # fmt: skip
    """NuMax's SDP at ``delta`` over every secant of ``points`` (n, d), by column generation:
    ``initial`` seeded random secants, then up to ``add`` of the worst violators a round,
    until no secant violates its constraint by more than ``check_tol`` * delta (checked
    exactly over all pairs), ``max_rounds`` rounds, or ``max_secants`` active secants (each
    round inverts an m x m matrix: a small delta that needs tens of thousands of secants would
    take hours; ``epsilon_all`` then says by how much the last solution misses delta). Each
    round runs the ADMM (``_ADMM``)
    to ``tol`` or ``max_iter`` iterations, warm-started from the last. ``secants``: start
    from these rows (e.g. an earlier delta's final set, ``NumaxSolution.secant_rows``) instead
    of a random sample."""
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta!r}")
    began = time.perf_counter()
    X = np.asarray(points, dtype=np.float64)
    n, d = X.shape
    rng = np.random.default_rng(seed)
    count = min(initial, n * (n - 1) // 2)
    i, j = random_pairs(n, count, rng.integers)
    secants = secant_rows(X, i, j) if secants is None else np.asarray(secants, dtype=np.float64)
    admm = _ADMM(d)
    rounds = iterations = 0
    while True:
        rounds += 1
        P, used = admm.solve(secants, delta, max_iter, tol)
        iterations += used
        values, vectors = np.linalg.eigh(P)
        root = np.sqrt(np.clip(values, 0, None))[:, None] * vectors.T  # root^T root = P
        report = evaluate(root, X, "pairs", worst=add, quantiles=False, mean_abs=False, memory_budget=memory_budget)
        if report.epsilon <= delta * (1 + check_tol) or rounds >= max_rounds or len(secants) >= max_secants:
            break
        wi, wj, dev = report.worst
        over = dev > delta * (1 + check_tol)
        room = max(0, max_secants - len(secants))
        secants = np.vstack([secants, secant_rows(X, wi[over][:room], wj[over][:room])])
    top = values.max()
    keep = values > RANK_RTOL * top if top > 0 else np.zeros_like(values, dtype=bool)
    order = np.argsort(values[keep])[::-1]
    psi = np.sqrt(values[keep][order])[:, None] * vectors[:, keep][:, order].T
    return NumaxSolution(
        float(delta),
        P,
        int(keep.sum()),
        psi,
        float(report.epsilon),
        len(secants),
        rounds,
        time.perf_counter() - began,
        eigenvalues=values,
        eigenvectors=vectors,
        iterations=iterations,
        secant_rows=secants,
    )


def numax_for_k(
    points, k: int, low: float = 0.05, high: float = 0.9, steps: int = 5, cache: dict | None = None, **kwargs
) -> dict:
    """The k-row NuMax map: bisection on delta in [``low``, ``high``] (``steps`` solves
    after the first at ``high``) for the smallest delta whose top-k truncation has exact
    epsilon <= delta; the best truncated map met, plain and best-scaled, with its figures.

    ``cache`` (a dict, delta -> solution, for several k on the same points): a delta solved
    before is not solved again, and the truncations of every cached solution are candidates
    for the best map (P does not depend on k; only its truncation does).

    Returns {"method": "numax", "k", "epsilon", "epsilon_scaled", "scale", "delta" (of the
    best map), "delta_reached" (smallest delta met, or None), "rank" (of that P), "solves" (the
    deltas whose truncation was measured, cached ones included),
    "seconds", "matrix" (the best map, scaled)}.
    """

    began = time.perf_counter()
    search = _TruncationSearch(np.asarray(points, dtype=np.float64), k, cache, kwargs)
    lo, hi = float(low), float(high)
    hi_ok = search.attempt(hi)
    for _ in range(steps):
        mid = math.sqrt(lo * hi)  # delta spans decades: bisect in log scale
        if search.attempt(mid):
            hi = mid
        else:
            lo = mid
    for delta in sorted(set(cache or ()) - {t["delta"] for t in search.tried}):  # other k's solutions
        search.attempt(delta)
    best = search.best
    return {
        "method": "numax",
        "k": int(k),
        **{key: best[key] for key in ("epsilon", "epsilon_scaled", "scale", "delta")},
        "delta_reached": search.reached,
        "high_reached": hi_ok,
        "rank": best["rank"],
        "solves": len(search.tried),
        "tried": search.tried,
        "seconds": time.perf_counter() - began,
        "matrix": best["matrix"],
    }


class _TruncationSearch:
    """The solves of :func:`numax_for_k`: each delta's top-k truncation measured exactly, the
    best-scaled map met so far (``best``), the smallest delta met (``reached``) and every
    attempt (``tried``). Each solve starts from the last one's active secants."""

    def __init__(self, X: np.ndarray, k: int, cache: dict | None, options: dict):
        self.X, self.k, self.cache, self.options = X, k, cache, options
        self.best: dict | None = None
        self.reached: float | None = None
        self.tried: list[dict] = []
        self.active = None

    def solve(self, delta: float) -> NumaxSolution:
        if self.cache is not None and delta in self.cache:
            return self.cache[delta]
        solution = numax(self.X, delta, secants=self.active, **self.options)
        if self.cache is not None:
            self.cache[delta] = solution
        return solution

    def attempt(self, delta: float) -> bool:
        """Solve at ``delta``; True when the truncation's exact epsilon is <= delta."""
        solution = self.solve(delta)
        self.active = solution.secant_rows
        A = solution.truncated(self.k)
        report = evaluate(A, self.X, "pairs", quantiles=False, mean_abs=False)
        # delta >= 1 lets P = 0 through; a map that sends everything to 0 has no best scale
        scale, eps_scaled = best_scale(report) if report.max_ratio > 0 else (1.0, math.inf)
        self.tried.append(
            {
                "delta": delta,
                "rank": solution.rank,
                "epsilon": report.epsilon,
                "epsilon_scaled": eps_scaled,
                "rounds": solution.rounds,
                "secants": solution.secants,
            }
        )
        if self.best is None or eps_scaled < self.best["epsilon_scaled"]:
            self.best = {
                "epsilon": report.epsilon,
                "epsilon_scaled": eps_scaled,
                "scale": scale,
                "delta": delta,
                "rank": solution.rank,
                "matrix": scale * A,
            }
        ok = report.epsilon <= delta
        if ok and (self.reached is None or delta < self.reached):
            self.reached = delta
        return ok
