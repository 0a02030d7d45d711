"""The exact objective's noncentral chi-squared CDF against scipy, its derivatives, and its limits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jl_lightning.core.exact_objective import SERIES_DELTA_MAX, exact_objective, failure_probabilities, ncx2_cdf

stats = pytest.importorskip("scipy.stats")


def f64(values):
    return torch.as_tensor(np.asarray(values, dtype=np.float64))


@pytest.mark.parametrize("k", [1, 2, 10, 30])
@pytest.mark.parametrize("delta", [0.0, 0.3, 5.0, 100.0, 1e3, 1e4, 5e4])
def test_cdf_matches_scipy_to_1e9(k, delta):
    mean, sd = k + delta, math.sqrt(2 * (k + 2 * delta))
    xs = np.concatenate([[1e-3, 0.5], mean + sd * np.linspace(-6, 6, 13)])
    xs = xs[xs > 0]
    ours = ncx2_cdf(f64(xs), k, f64(delta)).numpy()
    ref = stats.chi2.cdf(xs, k) if delta == 0 else stats.ncx2.cdf(xs, k, delta)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("delta", [2e5, 1e6, 1e7])
def test_sankaran_branch_beyond_the_series_is_within_its_measured_error(delta):
    assert delta > SERIES_DELTA_MAX
    k = 30
    mean, sd = k + delta, math.sqrt(2 * (k + 2 * delta))
    xs = mean + sd * np.linspace(-5, 5, 21)
    np.testing.assert_allclose(
        ncx2_cdf(f64(xs), k, f64(delta)).numpy(), stats.ncx2.cdf(xs, k, delta), rtol=0, atol=2e-5
    )


def test_mixed_branches_in_one_call():
    deltas = np.array([0.0, 10.0, 5e4, 3e5])
    xs = deltas + 10
    ours = ncx2_cdf(f64(xs), 10, f64(deltas)).numpy()
    ref = np.array([stats.chi2.cdf(xs[0], 10)] + [stats.ncx2.cdf(x, 10, d) for x, d in zip(xs[1:], deltas[1:])])
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    np.testing.assert_allclose(ours[:3], ref[:3], atol=1e-9)


def test_cdf_gradients_match_finite_differences_to_second_order():
    x = f64([3.0, 12.0, 40.0]).requires_grad_(True)
    delta = f64([0.5, 8.0, 25.0]).requires_grad_(True)
    fn = lambda a, b: ncx2_cdf(a, 6, b)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, delta), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradgradcheck(fn, (x, delta), eps=1e-6, atol=1e-6)


def test_derivative_in_delta_is_the_paper_identity():
    """dF_{k,delta}/d delta = (F_{k+2,delta} - F_{k,delta}) / 2 (Appendix C)."""
    x, delta = f64(20.0), f64(9.0).requires_grad_(True)
    (grad,) = torch.autograd.grad(ncx2_cdf(x, 8, delta), delta)
    expected = (ncx2_cdf(x, 10, delta.detach()) - ncx2_cdf(x, 8, delta.detach())) / 2
    assert float(grad) == pytest.approx(float(expected), abs=1e-10)


def test_objective_gradient_in_m_and_sigma2():
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(5, 6, generator=gen, dtype=torch.float64)
    mean = (torch.randn(3, 6, generator=gen, dtype=torch.float64) * 0.5).requires_grad_(True)
    s2 = f64(0.4).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m, s: exact_objective(m, s, points, 0.3), (mean, s2), eps=1e-6, atol=1e-6)


def test_m_zero_is_stationary_in_m():
    """At M = 0 the gradient in M vanishes: plain gradient descent from there never moves M."""
    points = torch.randn(6, 5, dtype=torch.float64)
    mean = torch.zeros(3, 5, dtype=torch.float64, requires_grad=True)
    exact_objective(mean, f64(1.0), points, 0.5).backward()
    assert float(mean.grad.abs().max()) == 0.0


def test_small_sigma2_never_nan_and_tends_to_the_indicator():
    gen = torch.Generator().manual_seed(1)
    points = torch.randn(8, 6, generator=gen, dtype=torch.float64)
    mean = torch.randn(4, 6, generator=gen, dtype=torch.float64) * 0.6
    ratios = (points @ mean.T).pow(2).sum(1) / points.pow(2).sum(1) / 4
    deviations = (ratios - 1).abs().sort().values
    eps = float(deviations[3] + deviations[4]) / 2  # 4 points inside, 4 outside, none near the edge
    indicator = float(((ratios - 1).abs() > eps).sum())
    for s2 in (1e-2, 1e-4, 1e-6, 1e-9, 1e-13, 0.0):
        m = mean.clone().requires_grad_(True)
        value = exact_objective(m, f64(s2), points, eps)
        assert math.isfinite(float(value.detach()))
        if s2 <= 1e-6:
            assert float(value.detach()) == pytest.approx(indicator, abs=1e-2)
        value.backward()
        assert bool(torch.isfinite(m.grad).all())
    probs = failure_probabilities(mean, f64(0.0), points, eps)
    assert float(probs.sum()) == indicator


def test_derivatives_at_delta_zero():
    """At delta = 0 the Poisson weights' derivatives must survive: dF/d delta = (F_{k+2} - F_k)/2 there too."""
    x = f64(7.0)
    delta = f64(0.0).requires_grad_(True)
    (grad,) = torch.autograd.grad(ncx2_cdf(x, 4, delta), delta)
    expected = (stats.chi2.cdf(7.0, 6) - stats.chi2.cdf(7.0, 4)) / 2
    assert float(grad) == pytest.approx(expected, abs=1e-10)
    # the second derivative too: d^2F/d delta^2 = (F_{k+4} - 2 F_{k+2} + F_k) / 4
    (first,) = torch.autograd.grad(ncx2_cdf(x, 4, delta), delta, create_graph=True)
    (second,) = torch.autograd.grad(first, delta)
    expected2 = (stats.chi2.cdf(7.0, 8) - 2 * stats.chi2.cdf(7.0, 6) + stats.chi2.cdf(7.0, 4)) / 4
    assert float(second) == pytest.approx(expected2, abs=1e-10)
