"""The sampled objective: hand-computed values, the 1/sqrt(k) scaling, the span trick's law, no NaN."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch

from jl_lightning.core.sampling import sample_embedded, sampled_sq_norms, span_factor
from jl_lightning.errors import JLInputError
from tests.helpers import sampler


def unit(rows):
    x = torch.tensor(rows, dtype=torch.float32)
    return x / x.norm(dim=1, keepdim=True)


def make(k, d, **kw):
    kw.setdefault("optimizer", partial(torch.optim.Adam, lr=0.01))
    return sampler(k=k, dim=d, **kw)


def test_loss_by_hand_deterministic():
    """sigma^2 = 0: the loss is the plain max distortion of M / sqrt(k)."""
    model = make(2, 3, init_variance=0.0, reg_weight=1.0)
    with torch.no_grad():
        model.mean.copy_(math.sqrt(2) * torch.tensor([[1.0, 0, 0], [0, 2.0, 0]]))
    x = unit([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    # ||A x||^2 with A = diag(1, 2) on the first two coordinates:
    # e1 -> 1 (eps 0), e2 -> 4 (eps 3), e3 -> 0 (eps 1), (e1+e2)/sqrt2 -> (1+4)/2 (eps 1.5)
    loss, sampled, s2 = (t.detach() for t in model.objective(x))
    assert float(s2) == 0.0
    assert float(sampled) == pytest.approx(3.0, rel=1e-6)
    assert float(loss) == pytest.approx(3.0, rel=1e-6)


def test_subspace_penalty_by_hand():
    """loss with the penalty - loss without = lambda ||(M / sqrt(k)) Q||_F^2, Q off the principal
    directions holding the asked share of the variance (numpy's SVD as the reference)."""
    rng = np.random.default_rng(0)
    # variance 9 : 4 : 1 : 0.01 along four orthonormal directions of R^6
    basis = np.linalg.qr(rng.standard_normal((6, 4)))[0]
    X = (rng.standard_normal((200, 4)) * [3.0, 2.0, 1.0, 0.1]) @ basis.T
    points = torch.tensor(X, dtype=torch.float32)
    _, sv, vt = np.linalg.svd(X - X.mean(0))
    share = np.cumsum(sv**2) / (sv**2).sum()
    r = int(np.searchsorted(share, 0.9)) + 1  # 9 / 14.01 < 0.9 <= 13 / 14.01: two directions
    assert r == 2
    Q = np.eye(6) - vt[:r].T @ vt[:r]
    plain, penalized = (make(3, 6, init_variance=0.0, subspace_penalty=w, subspace_energy=0.9) for w in (0.0, 0.5))
    M = torch.tensor(rng.standard_normal((3, 6)), dtype=torch.float32)
    for model in (plain, penalized):
        with torch.no_grad():
            model.mean.copy_(M)
    difference = float((penalized.objective(points)[0] - plain.objective(points)[0]).detach())
    assert difference == pytest.approx(0.5 * ((M.numpy() @ Q) ** 2).sum() / 3, rel=1e-5)


def test_regularizer_by_hand():
    """loss - sampled term = lambda * sigma^2 / 2 for both parameterizations."""
    x = unit([[1, 2, 3], [3, 1, 0]])
    for variance in ("raw", "log"):
        model = make(2, 3, variance=variance, init_variance=0.3, reg_weight=2.0)
        loss, sampled, s2 = (t.detach() for t in model.objective(x))
        assert float(s2) == pytest.approx(0.3, rel=1e-6)
        assert float(loss - sampled) == pytest.approx(2.0 * 0.3 / 2, rel=1e-6)


def test_sampled_term_matches_an_independent_computation():
    """Full sampling: mean over samples of max_i | ||A_s x_i||^2 / ||x_i||^2 - 1 |, recomputed in numpy."""
    k, d, n, N, s2 = 3, 5, 4, 6, 0.7
    model = make(
        k, d, n_samples=N, variance="raw", init_variance=s2, sampling="full", init_mean="gaussian", init_seed=1
    )
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(2)) * 2  # not unit norm
    torch.manual_seed(5)
    _, sampled, _ = model.objective(x)
    torch.manual_seed(5)
    E = torch.randn(N, k, d).double().numpy()
    M, X = model.mean.detach().double().numpy(), x.double().numpy()
    expected = np.mean(
        [
            np.max(np.abs(((((M + math.sqrt(s2) * E[s]) / math.sqrt(k)) @ X.T) ** 2).sum(0) / (X**2).sum(1) - 1))
            for s in range(N)
        ]
    )
    assert float(sampled.detach()) == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("sampling", ["full", "span"])
def test_scaling_at_init(sampling):
    """At M = 0, sigma^2 = 1: E ||A x||^2 = ||x||^2, each point within 5 standard errors."""
    torch.manual_seed(0)
    k, d, n, N = 30, 50, 8, 4000
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(1)).double()
    factor = span_factor(x) if sampling == "span" else None
    y = sample_embedded(torch.zeros(k, d, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64), N, x, factor)
    ratio = y.pow(2).sum(1) / x.pow(2).sum(1)  # (N, n): chi^2_k / k, mean 1, var 2/k
    stderr = math.sqrt(2 / k / N)
    assert (ratio.mean(0) - 1).abs().max() < 5 * stderr


def test_span_trick_has_the_law_of_full_sampling():
    """E[Y^T Y] = X X^T for the noise part, as for E X^T: the two samplers share their covariance."""
    torch.manual_seed(0)
    k, d, n, N = 4, 12, 5, 20000
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(3)).double()
    x = x / x.norm(dim=1, keepdim=True)
    y = sample_embedded(
        torch.zeros(k, d, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64), N, x, span_factor(x)
    )
    gram = torch.einsum("ski,skj->ij", y, y) / N  # E[sum_k y_ki y_kj] = <x_i, x_j>
    target = x @ x.T
    # each entry is a mean of N terms with variance <= 2/k (|<x_i,x_j>| <= 1)
    assert (gram - target).abs().max() < 5 * math.sqrt(2 / k / N) * 1.5


def test_raw_variance_at_zero_gives_finite_gradients():
    """d sqrt(s)/ds is infinite at 0; the safe sigma keeps M's gradient finite."""
    model = make(3, 6, variance="raw", init_variance=0.0, init_mean="gaussian")  # M = 0 is stationary
    x = unit(np.random.default_rng(0).standard_normal((5, 6)).tolist())
    loss, _, _ = model.objective(x)
    loss.backward()
    assert torch.isfinite(model.mean.grad).all() and model.mean.grad.abs().sum() > 0
    assert torch.isfinite(model.variance.theta.grad).all()


def test_raw_variance_is_projected_to_zero_not_below():
    model = make(3, 6, variance="raw", init_variance=0.01)
    with torch.no_grad():
        model.variance.theta.fill_(-0.5)
    assert model.variance.value().item() == 0.0 and model.variance.current() == 0.0
    model.variance.project_()
    assert model.variance.theta.item() == 0.0


def test_freeze_at_zero_is_exact_for_both_parameterizations():
    for variance in ("raw", "log"):
        model = make(2, 4, variance=variance, init_variance=0.5)
        model.variance.freeze_at_zero()
        assert float(model.variance.value()) == 0.0
        assert not model.variance.theta.requires_grad
        assert model.deterministic


def test_embedding_is_mean_over_sqrt_k():
    model = make(4, 6, init_mean="gaussian", init_seed=3)
    torch.testing.assert_close(model.embedding, model.mean.detach() / 2.0)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"variance": "softplus"}, r"model.variance must be one of \['log', 'raw'\]"),
        ({"sampling": "half"}, r"model.loss.sampling must be one of"),
        ({"init_mean": "ones"}, r"model.init_mean must be one of"),
        ({"n_samples": 0}, r"model.n_samples must be a positive integer"),
        ({"init_variance": -1.0}, r"model.init_variance must be a finite number >= 0"),
        ({"variance": "log", "init_variance": 0.0}, r"must be > 0 with model.variance=log"),
        ({"subspace_penalty": -1.0}, r"model.subspace_penalty must be a number >= 0"),
        ({"subspace_energy": 1.5}, r"model.subspace_energy must be a fraction in \(0, 1\]"),
    ],
)
def test_bad_model_options(kwargs, match):
    with pytest.raises(JLInputError, match=match):
        make(2, 4, **kwargs)


def test_wrong_point_dimension_is_refused():
    with pytest.raises(JLInputError, match=r"expected points of shape \(n, 4\)"):
        make(2, 4).objective(torch.ones(3, 5))


@pytest.mark.parametrize("sampling", ["full", "span"])
def test_sampled_norms_follow_the_noncentral_chi2_law(sampling):
    """k ||A x||^2 / (sigma^2 ||x||^2) ~ noncentral chi^2 with k dof and delta = ||M x||^2 / (sigma^2 ||x||^2).

    This is the distribution behind the paper's exact objective (Appendix C);
    scipy.stats.ncx2 is the independent reference, checked with a KS test.
    """
    stats = pytest.importorskip("scipy.stats")
    k, d, n, N, s2 = 6, 9, 3, 4000, 0.5
    gen = torch.Generator().manual_seed(7)
    M = torch.randn(k, d, generator=gen, dtype=torch.float64) * 0.4
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    torch.manual_seed(11)
    factor = span_factor(x) if sampling == "span" else None
    y = sample_embedded(M, torch.tensor(math.sqrt(s2), dtype=torch.float64), N, x, factor)
    sq = x.pow(2).sum(1)
    scaled = (k * y.pow(2).sum(1) / (s2 * sq)).numpy()  # (N, n)
    delta = ((M @ x.T).pow(2).sum(0) / (s2 * sq)).numpy()
    for i in range(n):
        result = stats.kstest(scaled[:, i], stats.ncx2(df=k, nc=delta[i]).cdf)
        assert result.pvalue > 1e-3, (i, delta[i], result)
        # and a wrong law is rejected: the central chi^2 when delta is not small
        if delta[i] > 2:
            assert stats.kstest(scaled[:, i], stats.chi2(df=k).cdf).pvalue < 1e-6


def test_identity_init_starts_at_scale_i_0_plus_the_configured_noise():
    exact = sampler(k=3, dim=5, init_mean="identity", init_scale=2.0)
    torch.testing.assert_close(exact.embedding, 2.0 * torch.eye(3, 5))
    noisy = sampler(k=30, dim=40, init_mean="identity", init_scale=2.0, init_noise=0.1, init_seed=4)
    deviation = noisy.embedding - 2.0 * torch.eye(30, 40)
    assert float(deviation.std()) == pytest.approx(0.1, rel=0.1)
    with pytest.raises(JLInputError, match="k <= d"):
        sampler(k=6, dim=5, init_mean="identity")


def test_the_objective_is_the_loss_term_plus_the_regularizer_and_the_penalty():
    """core.objective.SamplerObjective against the terms computed by hand: the hard max over
    the points of each sample's |ratio - 1| (same noise), lambda sigma^2 / 2, and the penalty
    ||M Q||_F^2 / k with Q the projector off the top principal direction."""
    from jl_lightning.core.objective import SamplerObjective, principal_directions
    from jl_lightning.core.variance import make_variance
    from tests.helpers import default_loss

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    x = x / x.norm(dim=1, keepdim=True)
    M = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    variance = make_variance("raw", 0.3).double()
    objective = SamplerObjective(
        loss=default_loss(sampling="full"), reg_weight=0.7, subspace_penalty=0.5, subspace_energy=0.4
    )
    objective.prepare(x, dtype=torch.float64)
    torch.manual_seed(5)
    loss, sampled, s2 = objective(M, variance, 3, 0, 10)
    torch.manual_seed(5)
    noise = torch.randn(3, 2, 4, dtype=torch.float64)
    A = (M + math.sqrt(0.3) * noise) / math.sqrt(2)
    dev = ((x @ A.transpose(1, 2)).pow(2).sum(-1) / x.pow(2).sum(1) - 1).abs().amax(1)
    U = principal_directions(x, 0.4)
    Q = torch.eye(4, dtype=torch.float64) - U @ U.T
    expected = dev.mean() + 0.7 * 0.3 / 2 + 0.5 * (M @ Q).pow(2).sum() / 2
    # to the safe square root's rounding in sigma (variance.py); each term is far larger
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-7)
    assert float(sampled) == pytest.approx(float(dev.mean()), rel=1e-7) and float(s2.detach()) == pytest.approx(0.3)
    # Q projects off the data's top direction: rank d - 1 here
    assert int(torch.linalg.matrix_rank(Q)) == 3


@pytest.mark.parametrize("n, d", [(40, 7), (7, 40)])
def test_principal_directions_are_the_top_right_singular_vectors_for_tall_and_wide_points(n, d):
    """Against numpy's SVD of the centered points: the same number of directions for the
    energy cut and the same subspace (U U^T), whether the eigenproblem is d x d (n >= d) or
    the n x n Gram (n < d); points that do not vary give None (no penalty)."""
    from jl_lightning.core.objective import off_subspace, principal_directions

    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, d)) * np.geomspace(1, 0.05, d)
    centered = x - x.mean(0)
    _, s, vt = np.linalg.svd(centered, full_matrices=False)
    energy = 0.9
    share = np.cumsum(s**2) / np.sum(s**2)
    r = int(np.searchsorted(share, energy, side="left")) + 1
    U = principal_directions(torch.from_numpy(x), energy)
    assert U.shape == (d, r)
    np.testing.assert_allclose(U.numpy() @ U.numpy().T, vt[:r].T @ vt[:r], atol=1e-10)
    M = torch.from_numpy(rng.standard_normal((3, d)))
    np.testing.assert_allclose(off_subspace(M, U).numpy(), M.numpy() @ (np.eye(d) - vt[:r].T @ vt[:r]), atol=1e-10)
    assert principal_directions(torch.ones(5, d, dtype=torch.float64), energy) is None


def test_the_active_set_goes_through_state_dict_before_or_after_prepare():
    from tests.helpers import default_loss

    x = torch.randn(12, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    loss = default_loss(mode="pairs", active_hard=4, active_candidates=6)
    loss.prepare(x)
    assert loss.state_dict() == {}  # no exact pass yet: nothing to keep
    loss.set_hard(torch.tensor([0, 1, 2, 3]), torch.tensor([5, 6, 7, 8]))
    loss.set_candidates(torch.tensor([0, 2, 4]), torch.tensor([9, 10, 11]), torch.tensor([1.0, 2.0, 3.0]))
    state = loss.state_dict()
    for before in (True, False):
        other = default_loss(mode="pairs", active_hard=4, active_candidates=6)
        if before:
            other.load_state_dict(state)
            other.prepare(x)
        else:
            other.prepare(x)
            other.load_state_dict(state)
        assert other.refreshed and not other.needs_refresh(1)
        torch.testing.assert_close(other.active.hard_i, loss.active.hard_i)
        torch.testing.assert_close(other.active.hard_j, loss.active.hard_j)
        for a, b in zip(other.candidates, loss.candidates):
            torch.testing.assert_close(a, b)


def test_a_stepper_continues_from_its_state_dict():
    """Two Hessian-descent steppers, one restored from the other's state_dict mid-run, take
    the same next steps (counters, step size and the perturbation generator included)."""
    from jl_lightning.core.second_order import PerturbedGD

    first, second = PerturbedGD(10.0, 0.1, seed=3), PerturbedGD(10.0, 0.1, seed=99)
    first.calls, first.gradient_step.eta, first.gradient_step.count = 7, 0.05, 4
    first.generator.manual_seed(11)
    second.load_state_dict(first.state_dict())
    assert (second.calls, second.gradient_step.eta, second.gradient_step.count) == (7, 0.05, 4)
    assert torch.equal(torch.rand(3, generator=first.generator), torch.rand(3, generator=second.generator))


@pytest.mark.parametrize("indexed", [True, False])
def test_sampled_pair_norms_and_their_gradients_equal_autograd_on_the_direct_form(indexed):
    # ||(a_i - a_j) + sigma (b_i - b_j)||^2 formed directly and differentiated by autograd,
    # against the expanded form and its hand-written backward (float64)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(7, 4, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(7, 3, 4, dtype=torch.float64, generator=g)
    sigma = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    i, j = (torch.tensor([0, 1, 2, 6, 0, 3]), torch.tensor([3, 4, 5, 1, 2, 3])) if indexed else (None, None)
    weights = torch.rand(6 if indexed else 7, 3, dtype=torch.float64, generator=g)

    def direct():
        u, v = (a[i] - a[j], b[i] - b[j]) if indexed else (a, b)
        return (u[:, None] + sigma * v).pow(2).sum(-1)

    expected = direct()
    grads = torch.autograd.grad((expected * weights).sum(), (a, sigma))
    got = sampled_sq_norms(a, b, sigma, i, j)
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)
    for mine, reference in zip(torch.autograd.grad((got * weights).sum(), (a, sigma)), grads):
        assert torch.allclose(mine, reference, rtol=1e-12, atol=1e-12)
