"""Algorithm 1 and PGD on the exact objective: Lanczos, the escape from M = 0, and the wiring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jl_lightning.core.exact_objective import exact_objective
from jl_lightning.core.second_order import FlatView, lanczos_min_eigen
from jl_lightning.errors import JLInputError
from jl_lightning.lightning.exact_sampler import ExactProblem, ExactSampler

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
        plain.stepper.step(ExactProblem(plain, points))
    assert float(plain.mean.detach().abs().max()) == 0.0  # M = 0 is stationary in M: GD never moves it
    model = ExactSampler(method="hessian", **kwargs)
    kinds = [model.stepper.step(ExactProblem(model, points))["step_type"] for _ in range(40)]
    assert 1.0 in kinds  # a curvature step was taken ...
    assert float(model.mean.detach().abs().max()) > 1e-3  # ... and M left 0
    assert model.run_report()["curvature_steps"] >= 1


def test_pgd_perturbation_also_leaves_m_zero():
    model = ExactSampler(method="pgd", k=10, dim=60, eps=0.3, rho=0.05, pgd_interval=5, pgd_radius=0.1)
    points = unit_points(n=30, d=60)
    kinds = []
    while 3.0 not in kinds and len(kinds) < 40:
        kinds.append(model.stepper.step(ExactProblem(model, points))["step_type"])
    assert kinds[-1] == 3.0 and model.run_report()["perturbations"] == 1  # the gradient vanished, PGD perturbed ...
    assert float(model.mean.detach().abs().max()) > 0  # ... and M left 0


def test_objective_is_the_exact_g_and_the_embedding_is_m_over_sqrt_k():
    model = ExactSampler(k=4, dim=8, init_mean="gaussian", init_seed=3, init_variance=0.2)
    points = unit_points()
    expected = exact_objective(model.mean.detach(), model.variance.value().detach(), points, 0.3)
    assert float(model.objective(points).detach()) == pytest.approx(float(expected), rel=1e-12)
    torch.testing.assert_close(model.embedding, model.mean.detach() / 2.0)


@pytest.mark.parametrize(
    "bad",
    [
        {"method": "newton"},
        {"eps": 1.5},
        {"K": 0.0},
        {"mode": "pairs"},
        {"max_curvature_step": 0.0},
        {"pgd_threshold": -1.0},
        {"init_mean": "zeroes"},
        {"log_every": 0},
        {"lanczos_iters": 0},
    ],
)
def test_bad_options_are_refused(bad):
    kwargs = dict(k=2, dim=4)
    kwargs.update(bad)
    with pytest.raises(JLInputError):
        ExactSampler(**kwargs)


@pytest.mark.slow
def test_jl_train_runs_the_exact_model_end_to_end(cfg_factory):
    import json
    from pathlib import Path

    from jl_lightning.apps.train import train

    summary, _ = train(
        cfg_factory(
            "experiment=exact_small",
            "trainer.max_steps=30",
            "logger=csv",
            "baseline.draws=5",
            "log_every=10",
            "callbacks.model_checkpoint.every_n_train_steps=10",
        )
    )
    run = Path(summary["run_dir"])
    assert np.load(run / "embedding.npy").shape == (10, 60)
    assert json.loads((run / "summary.json").read_text())["steps"] == 30
    assert math.isfinite(summary["final_distortion"])


def deterministic_distortion(model, points):
    E = model.embedding
    return float((((points @ E.T) ** 2).sum(1) / (points**2).sum(1) - 1).abs().max())


def run_until_stopped(model, points, max_steps):
    for _ in range(max_steps):
        model.stepper.step(ExactProblem(model, points))
        if model.stepper.stopped:
            return
    raise AssertionError(f"{model.method} did not stop within {max_steps} steps")


def test_hessian_descent_drives_sigma2_to_zero_with_distortion_at_most_eps():
    """experiment=exact_small's case with the default L, K, rho: from M = 0, sigma^2 = 1 to an
    approximate SOSP with sigma^2 <= 1e-3 and deterministic distortion <= eps, the bound of
    Theorem 2 when g(0, 1) < 1 (here, at eps = 0.5, a measured fact rather than the theorem)."""
    points = unit_points(n=30, d=60)
    model = ExactSampler(k=10, dim=60, eps=0.5)
    run_until_stopped(model, points, 3000)
    report = model.run_report()
    assert report["curvature_steps"] >= 1 and report["gradient_steps"] >= 1
    assert model.sigma2() <= 1e-3
    assert deterministic_distortion(model, points) <= 0.5


@pytest.mark.slow
def test_pgd_reaches_an_approximate_second_order_stationary_point():
    """PGD's returned point is a rho-SOSP, checked with scipy's eigsh on autograd's own
    Hessian-vector product of g (independent of the stepper's Lanczos)."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    points = unit_points(n=20, d=40)
    model = ExactSampler(method="pgd", k=8, dim=40, eps=0.5)  # default radius 1, interval 1000
    run_until_stopped(model, points, 12000)
    assert model.run_report()["perturbations"] >= 1 and float(model.mean.detach().abs().max()) > 0.1  # left M = 0
    _, grad = FlatView(ExactProblem(model, points)).gradient(create_graph=False)
    assert float(grad.norm()) <= 0.01  # rho
    at_bound = model.sigma2() <= 0.0
    M0 = model.mean.detach().clone()
    s0 = torch.tensor(model.sigma2(), dtype=torch.float64)

    def g(flat):  # g over M, and over sigma^2 unless it sits at its bound 0
        M = flat[: M0.numel()].view_as(M0)
        return exact_objective(M, s0 if at_bound else flat[-1], points, 0.5)

    flat = torch.cat([M0.reshape(-1)] + ([] if at_bound else [s0.reshape(1)]))

    def hvp(v):
        v = torch.as_tensor(v, dtype=torch.float64).reshape(-1)
        return torch.autograd.functional.hvp(g, flat, v)[1].numpy()

    probe = np.random.default_rng(0).standard_normal(flat.numel())
    if not np.any(hvp(probe)):  # at sigma^2 = 0, g is piecewise constant in M: its Hessian is 0
        lam = 0.0
    else:
        op = LinearOperator((flat.numel(), flat.numel()), matvec=hvp, dtype=np.float64)
        lam = eigsh(op, k=1, which="SA", tol=1e-6, return_eigenvectors=False)[0]
    assert lam >= -math.sqrt(1e-5 * 0.01)  # -sqrt(K rho) with the defaults
    assert float(g(flat)) < float(ExactSampler(k=8, dim=40, eps=0.5).objective(points).detach())  # below g(0, 1)
