"""Algorithm 1 and PGD on the exact objective: Lanczos, the escape from M = 0, and the wiring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jl_lightning.errors import JLInputError
from jl_lightning.exact_sampler import ExactSampler, lanczos_min_eigen

pytest.importorskip("scipy")


def unit_points(n=12, d=8, seed=0):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def test_lanczos_finds_the_smallest_eigenpair_of_a_symmetric_operator():
    rng = np.random.default_rng(0)
    B = rng.standard_normal((30, 30))
    H = torch.tensor(B + B.T)
    value, vector = lanczos_min_eigen(lambda v: H @ v, 30, 30, torch.Generator().manual_seed(1))
    exact = torch.linalg.eigvalsh(H)[0]
    assert value == pytest.approx(float(exact), rel=1e-8)
    assert float((H @ vector - value * vector).norm()) < 1e-6


def test_hessian_descent_escapes_m_zero_where_gradient_descent_cannot():
    points = unit_points(n=30, d=60)  # experiment=exact_small's sizes
    kwargs = dict(k=10, dim=60, eps=0.3, rho=0.05, K=0.001, init_variance=1.0)
    plain = ExactSampler(method="pgd", pgd_interval=10**12, **kwargs)  # PGD without perturbations = GD
    for _ in range(40):
        plain._pgd_step(points)
    assert float(plain.mean.detach().abs().max()) == 0.0  # M = 0 is stationary in M: GD never moves it
    model = ExactSampler(method="hessian", **kwargs)
    kinds = [model._hessian_step(points)["step_type"] for _ in range(40)]
    assert 1.0 in kinds  # a curvature step was taken ...
    assert float(model.mean.detach().abs().max()) > 1e-3  # ... and M left 0
    assert model.curvature_steps >= 1


def test_pgd_perturbation_also_leaves_m_zero():
    model = ExactSampler(method="pgd", k=10, dim=60, eps=0.3, rho=0.05, pgd_interval=5, pgd_radius=0.1)
    points = unit_points(n=30, d=60)
    kinds = []
    while 3.0 not in kinds and len(kinds) < 40:
        kinds.append(model._pgd_step(points)["step_type"])
    assert kinds[-1] == 3.0 and model.perturbations == 1  # the gradient vanished, PGD perturbed ...
    assert float(model.mean.detach().abs().max()) > 0  # ... and M left 0


def test_objective_is_the_exact_g_and_the_embedding_is_m_over_sqrt_k():
    from jl_lightning.exact_objective import exact_objective

    model = ExactSampler(k=4, dim=8, init_mean="gaussian", init_seed=3, init_variance=0.2)
    points = unit_points()
    expected = exact_objective(model.mean.detach(), model.variance.value().detach(), points, 0.3)
    assert float(model.objective(points).detach()) == pytest.approx(float(expected), rel=1e-12)
    torch.testing.assert_close(model.embedding, model.mean.detach() / 2.0)


@pytest.mark.parametrize("bad", [{"method": "newton"}, {"eps": 1.5}, {"K": 0.0}, {"mode": "pairs"},
                                 {"max_curvature_step": 0.0}, {"pgd_threshold": -1.0}])
def test_bad_options_are_refused(bad):
    kwargs = dict(k=2, dim=4)
    kwargs.update(bad)
    with pytest.raises(JLInputError):
        ExactSampler(**kwargs)


@pytest.mark.slow
def test_jl_train_runs_the_exact_model_end_to_end(cfg_factory):
    import json
    from pathlib import Path

    from jl_lightning.train import train

    summary = train(cfg_factory("experiment=exact_small", "trainer.max_steps=30", "logger=csv", "baseline.draws=5",
                                "log_every=10", "callbacks.model_checkpoint.every_n_train_steps=10"))
    run = Path(summary["run_dir"])
    assert np.load(run / "embedding.npy").shape == (10, 60)
    assert json.loads((run / "summary.json").read_text())["steps"] == 30
    assert math.isfinite(summary["final_distortion"])


def deterministic_distortion(model, points):
    E = model.embedding
    return float((((points @ E.T) ** 2).sum(1) / (points ** 2).sum(1) - 1).abs().max())


def run_until_stopped(model, points, max_steps):
    step = model._hessian_step if model.method == "hessian" else model._pgd_step
    for _ in range(max_steps):
        step(points)
        if model.stopped_at is not None:
            return
    raise AssertionError(f"{model.method} did not stop within {max_steps} steps")


def test_hessian_descent_drives_sigma2_to_zero_with_distortion_at_most_eps():
    """experiment=exact_small's case with the default L, K, rho: from M = 0, sigma^2 = 1 to an
    approximate SOSP with sigma^2 <= 1e-3 and deterministic distortion <= eps, the bound of
    Theorem 2 when g(0, 1) < 1 + (the measured fact that it also holds at eps = 0.5 here)."""
    points = unit_points(n=30, d=60)
    model = ExactSampler(k=10, dim=60, eps=0.5)
    run_until_stopped(model, points, 3000)
    assert model.curvature_steps >= 1 and model.gradient_steps >= 1
    assert model.variance.current() <= 1e-3
    assert deterministic_distortion(model, points) <= 0.5


def test_pgd_reaches_an_approximate_second_order_stationary_point():
    points = unit_points(n=30, d=60)
    model = ExactSampler(method="pgd", k=10, dim=60, eps=0.5)  # default radius 1, interval 1000
    run_until_stopped(model, points, 12000)
    assert model.perturbations >= 1 and float(model.mean.detach().abs().max()) > 0.1  # it left M = 0
    # the returned point is a rho-SOSP: small (projected) gradient, no curvature below -sqrt(K rho)
    value, grad = model._gradient(points, create_graph=True)
    assert float(grad.detach().norm()) <= model.rho
    params = model._params()

    def hvp(v):
        parts = torch.autograd.grad(grad, params, v, retain_graph=True, allow_unused=True)
        return torch.cat([(torch.zeros_like(p) if d is None else d).reshape(-1) for p, d in zip(params, parts)])

    lam, _ = lanczos_min_eigen(hvp, grad.numel(), 40, torch.Generator().manual_seed(0))
    assert lam >= -math.sqrt(model.K * model.rho)
    assert float(value.detach()) < float(ExactSampler(k=10, dim=60, eps=0.5).objective(points).detach())  # below g(0, 1)
