"""The paper's exact objective (Eq. 3-4, Appendix C): the noncentral chi-squared CDF in torch.

For A with i.i.d. N(m_rc, sigma^2) entries and a point x, ||A x||^2 / (sigma^2 ||x||^2)
follows a noncentral chi-squared law with k degrees of freedom and noncentrality
delta = ||M x||^2 / (sigma^2 ||x||^2). The probability that A distorts x by more than eps
(with the paper's ||A x||^2 / k convention, M unscaled) is

    1 + F_{k,delta}(k (1 - eps) / sigma^2) - F_{k,delta}(k (1 + eps) / sigma^2),

and the objective is g(M, sigma^2) = sum_j of that + sigma^2 / 2.

F is the Poisson mixture F_{k,delta}(x) = sum_i Pois(i; delta/2) P(k/2 + i, x/2), with P
the regularized lower incomplete gamma function (torch.special.gammainc, accurate to
~3e-10 against mpmath). Only the Poisson window i in [lam - W, lam + W], lam = delta/2,
W = 12 sqrt(lam) + 30, is summed: the mass outside is below 1e-25, and the cost grows
like sqrt(delta) instead of delta. Past ``SERIES_DELTA_MAX`` the series is replaced by
Sankaran's (1959) normal approximation of (X/(k+delta))^h, whose error against scipy is
measured in the tests (below 1e-5 there). Everything is float64 and differentiable to
second order in x and delta (the gradient flows through the Poisson weights and the
incomplete gamma's second argument). As sigma^2 -> 0 the objective tends to the number
of points whose deterministic distortion |||M x||^2 / (k ||x||^2) - 1| exceeds eps; below
``SIGMA2_FLOOR`` that limit is returned, so nothing overflows or turns into NaN.
"""

from __future__ import annotations

import math

import torch

SERIES_DELTA_MAX = 1e5  # the Poisson series up to here, Sankaran's approximation beyond
SIGMA2_FLOOR = 1e-12  # below this, the sigma^2 -> 0 limit (an indicator) is returned
_WINDOW_SCALE, _WINDOW_PAD = 12.0, 30.0
_SMALL_TERMS = 50  # Poisson terms kept for lam < 1: lam^50 / 50! < 1e-64


def _series_cdf(x: torch.Tensor, k: int, delta: torch.Tensor) -> torch.Tensor:
    """Poisson-mixture CDF over each element's own window of Poisson indices."""
    lam = delta.clamp(min=0) / 2
    with torch.no_grad():
        half = _WINDOW_SCALE * lam.sqrt() + _WINDOW_PAD
        start = (lam - half).clamp(min=0).floor()
        length = int((lam + half).ceil().sub(start).max().item()) + 1 if lam.numel() else 1
    i = start.unsqueeze(-1) + torch.arange(length, dtype=x.dtype, device=x.device)  # (..., T)
    lam_ = lam.unsqueeze(-1)
    # Pois(i; lam): lam^i e^-lam / i! directly for small lam (exact at lam = 0, with its
    # derivatives), in logs for large lam (no overflow). Each branch gets safe inputs where
    # it is not used, so neither can put a NaN into the other's gradient.
    small = lam_ < 1
    lam_small = torch.where(small, lam_, torch.full_like(lam_, 0.5))
    lam_large = torch.where(small, torch.ones_like(lam_), lam_)
    # lam^i by repeated multiplication: exact at lam = 0, and so are its first and second
    # derivatives (pow and exp/log forms give 0 * inf there). For lam < 1 the window starts
    # at i = 0 and the weights past i = _SMALL_TERMS are below 1e-60.
    terms = min(i.shape[-1], _SMALL_TERMS)
    power, powers = torch.ones_like(lam_small), []
    for _ in range(terms):
        powers.append(power)
        power = power * lam_small
    head = torch.cat(powers, dim=-1) * torch.exp(-lam_small - torch.lgamma(i[..., :terms] + 1))
    w_small = torch.cat([head, torch.zeros_like(i[..., terms:])], dim=-1)
    w_large = torch.exp(-lam_large + i * torch.log(lam_large) - torch.lgamma(i + 1))
    weights = torch.where(small, w_small, w_large)
    p = torch.special.gammainc(k / 2 + i, (x / 2).clamp(min=0).unsqueeze(-1))
    return (weights * p).sum(-1)


def _sankaran_cdf(x: torch.Tensor, k: int, delta: torch.Tensor) -> torch.Tensor:
    """Sankaran's approximation: (X / (k + delta))^h is close to normal."""
    kd = k + delta
    h = 1 - 2.0 / 3.0 * kd * (k + 3 * delta) / (k + 2 * delta) ** 2
    p = (k + 2 * delta) / kd**2
    m = (h - 1) * (1 - 3 * h)
    z = ((x.clamp(min=0) / kd) ** h - (1 + h * p * (h - 1 - 0.5 * (2 - h) * m * p))) / (
        h * torch.sqrt(2 * p) * (1 + 0.5 * m * p)
    )
    return 0.5 * torch.special.erfc(-z / math.sqrt(2))


def ncx2_cdf(x: torch.Tensor, k: int, delta: torch.Tensor) -> torch.Tensor:
    """F_{k,delta}(x), the noncentral chi-squared CDF, elementwise (broadcast), float64.

    Differentiable to second order in ``x`` and ``delta``. ``k`` is a positive integer.
    """
    if isinstance(k, bool) or int(k) != k or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    x, delta = torch.broadcast_tensors(
        torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(delta, dtype=torch.float64)
    )
    big = delta > SERIES_DELTA_MAX
    if not bool(big.any()):
        return _series_cdf(x, int(k), delta)
    if bool(big.all()):
        return _sankaran_cdf(x, int(k), delta)
    # each branch sees safe inputs where it is not used, so no NaN leaks into the gradient
    small_delta = torch.where(big, torch.zeros_like(delta), delta)
    big_delta = torch.where(big, delta, torch.full_like(delta, 2 * SERIES_DELTA_MAX))
    return torch.where(big, _sankaran_cdf(x, int(k), big_delta), _series_cdf(x, int(k), small_delta))


def failure_probabilities(mean: torch.Tensor, sigma2: torch.Tensor, points: torch.Tensor, eps: float) -> torch.Tensor:
    """P(| ||A x_j||^2 / (k ||x_j||^2) - 1 | > eps) for A ~ N(M, sigma^2), per point, shape (n,).

    The paper's convention: ``mean`` is M (k x d, not divided by sqrt(k)).
    """
    k = mean.shape[0]
    sq_norms = points.pow(2).sum(1)
    projected = (points @ mean.T).pow(2).sum(1) / sq_norms  # ||M x||^2 / ||x||^2
    if float(sigma2.detach()) <= SIGMA2_FLOOR:  # the sigma^2 -> 0 limit: the deterministic indicator,
        # piecewise constant in M (zero gradient, kept in the graph so backward still runs)
        return ((projected / k - 1).abs() > eps).to(points.dtype) + 0 * projected
    delta = projected / sigma2
    lower = ncx2_cdf(k * (1 - eps) / sigma2, k, delta)
    upper = ncx2_cdf(k * (1 + eps) / sigma2, k, delta)
    return 1 + lower - upper


def exact_objective(
    mean: torch.Tensor, sigma2: torch.Tensor, points: torch.Tensor, eps: float, reg_weight: float = 1.0
) -> torch.Tensor:
    """g(M, sigma^2) = sum_j P(x_j distorted by more than eps) + reg_weight * sigma^2 / 2 (float64)."""
    mean = mean.to(torch.float64)
    sigma2 = torch.as_tensor(sigma2, dtype=torch.float64)
    points = torch.as_tensor(points, dtype=torch.float64)
    return failure_probabilities(mean, sigma2, points, eps).sum() + reg_weight * sigma2 / 2
