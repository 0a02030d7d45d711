"""Random constructions, PCA and the JL bound: scaling, exactness and published values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jl_lightning.baselines import (
    SRHT,
    best_scale,
    fwht,
    pca_baseline,
    pca_matrix,
    random_draws,
    random_map,
    sparse_density,
)
from jl_lightning.metrics.distortion import evaluate


@pytest.mark.parametrize(
    "shape",
    [
        (5, 1),
        (5, 2),
        (5, 64),  # one Hadamard block
        (3, 4, 128),  # two blocks, leading dimensions kept
        (300, 512),  # rows beyond one cache block
        (2, 8192),  # three blocks
    ],
)
def test_fwht_equals_the_explicit_hadamard_matrix(shape):
    linalg = pytest.importorskip("scipy.linalg")
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    H = torch.as_tensor(linalg.hadamard(shape[-1]), dtype=torch.float64)
    torch.testing.assert_close(fwht(x), x @ H, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(fwht(x.float()), (x @ H).float(), rtol=1e-5, atol=1e-3)
    strided = torch.randn(*shape[:-1], 2 * shape[-1], dtype=torch.float64)[..., ::2]  # a view, not contiguous
    torch.testing.assert_close(fwht(strided), strided @ H, rtol=1e-12, atol=1e-9)


def test_fwht_refuses_a_length_that_is_not_a_power_of_two():
    with pytest.raises(ValueError, match="power of 2"):
        fwht(torch.ones(2, 12))


@pytest.mark.parametrize("method", ["gaussian", "rademacher", "sparse", "srht"])
def test_each_random_map_preserves_norms_in_expectation(method):
    """E ||A x||^2 = ||x||^2: mean over 2000 draws within 5 standard errors (std estimated)."""
    gen = torch.Generator().manual_seed(1)
    d, k, draws = 100, 8, 2000  # d=100 pads to 128 for the SRHT
    x = torch.randn(1, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    vals = []
    for _ in range(draws):
        A = random_map(method, k, d, gen)
        y = A.apply(x) if isinstance(A, SRHT) else x @ A.T
        vals.append(float(y.pow(2).sum() / x.pow(2).sum()))
    vals = np.array(vals)
    assert abs(vals.mean() - 1) < 5 * vals.std() / math.sqrt(draws)


@pytest.mark.parametrize("d, k", [(1, 1), (20, 6), (64, 16), (129, 5), (500, 30)])
def test_every_srht_backend_is_the_map_of_the_explicit_hadamard_matrix(d, k):
    """scale * (H D x)[rows] with scipy's Sylvester matrix H, for the torch transform, the
    k x d matrix and the automatic choice; the same maps give the same exact epsilon."""
    from scipy.linalg import hadamard

    ops = {
        backend: SRHT(k, d, torch.Generator().manual_seed(3), backend=backend) for backend in ("torch", "dense", "auto")
    }
    op = ops["torch"]
    H = torch.as_tensor(hadamard(op.p), dtype=torch.float64)
    X = torch.randn(9, d, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    expected = (X * op.signs) @ H[:d][:, op.rows] / math.sqrt(k)
    for backend, each in ops.items():
        torch.testing.assert_close(each.apply(X), expected, rtol=1e-12, atol=1e-12, msg=backend)
        assert torch.equal(each.rows, op.rows) and torch.equal(each.signs, op.signs)
    torch.testing.assert_close(ops["dense"].matrix(), H[op.rows][:, :d] * op.signs / math.sqrt(k))
    if d >= 2:
        assert evaluate(op, X.numpy(), "pairs").epsilon == pytest.approx(
            evaluate(ops["dense"], X.numpy(), "pairs").epsilon
        )


def test_the_srht_forms_its_matrix_only_while_it_is_small(monkeypatch):
    """Without the compiled kernel, "auto" applies the k x d matrix while k <= SRHT_DENSE_MAX_K
    and k d <= SRHT_DENSE_MAX_ENTRIES, and the transform otherwise; the dense path keeps the
    input's dtype and gradient."""
    from jl_lightning.baselines import random_maps, srht_kernel

    monkeypatch.setattr(srht_kernel, "AVAILABLE", False)
    monkeypatch.setattr(random_maps, "SRHT_DENSE_MAX_ENTRIES", 6 * 20)
    monkeypatch.setattr(random_maps, "SRHT_DENSE_MAX_K", 6)
    assert SRHT(6, 20, torch.Generator())._use_dense() and not SRHT(6, 21, torch.Generator())._use_dense()
    assert not SRHT(7, 16, torch.Generator())._use_dense()
    assert not SRHT(6, 20, torch.Generator(), backend="torch")._use_dense()
    op = SRHT(6, 20, torch.Generator().manual_seed(0))
    x = torch.randn(3, 20, requires_grad=True)
    y = op.apply(x)
    assert y.dtype == torch.float32 and op.matrix(torch.float32).dtype == torch.float32
    y.pow(2).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_sparse_density_follows_scikit_learn():
    assert sparse_density("auto", 400) == pytest.approx(1 / 20)
    A = random_map("sparse", 50, 400, torch.Generator().manual_seed(0))
    nonzero = float((A != 0).double().mean())
    assert abs(nonzero - 1 / 20) < 5 * math.sqrt((1 / 20) * (19 / 20) / A.numel())
    assert set(np.unique(np.abs(A.numpy()[A.numpy() != 0])).round(12)) == {round(math.sqrt(20 / 50), 12)}


def test_pca_best_scale_is_the_minimax_factor():
    X = np.random.default_rng(0).standard_normal((60, 12))
    A = pca_matrix(X, 4)
    report = evaluate(A, X)
    c, eps = best_scale(report)
    assert evaluate(c * A, X).epsilon == pytest.approx(eps, rel=1e-10)
    for other in (0.9 * c, 1.1 * c):  # any other scale is worse
        assert evaluate(other * A, X).epsilon > eps
    summary = pca_baseline(X, 4)
    assert summary["epsilon_scaled"] == pytest.approx(eps) and summary["epsilon"] == pytest.approx(report.epsilon)


def test_random_draws_are_seeded_and_bests_are_bests():
    X = np.random.default_rng(1).standard_normal((40, 32))
    for method in ("rademacher", "sparse", "srht"):
        a = random_draws(method, X, 8, draws=10, seed=3, mode="pairs")[0]
        b = random_draws(method, X, 8, draws=10, seed=3, mode="pairs")[0]
        assert a.pop("seconds") > 0 and b.pop("seconds") > 0  # the cost varies; the figures do not
        assert a == b
        assert 0 < a["best"] <= a["mean"]
    with pytest.raises(ValueError, match="unknown method"):
        random_map("fourier", 2, 4, torch.Generator())


def test_the_references_pass_is_sized_to_the_budget_from_the_first_pass(monkeypatch):
    """With a pass costing a + b m (20 s + 5 s a map, on a fake clock), a 100 s budget: the
    first pass measures 1 map (25 s), the next 3 (75 s left at 25 s a map, the cost bound
    from one pass), then 4 (a and b fitted from two passes: 20 + 5 * 4 = 40 = what is left),
    then none: 100 s spent, never more, and the same draws as an unbudgeted run of 8."""
    from jl_lightning.baselines import references

    now = [0.0]
    sizes = []
    real = references.evaluate

    def timed(maps, *args, **kwargs):
        sizes.append(len(maps))
        now[0] += 20.0 + 5.0 * len(maps)
        return real(maps, *args, **kwargs)

    monkeypatch.setattr(references, "evaluate", timed)
    X = np.random.default_rng(0).standard_normal((30, 12))
    figures, _ = references.random_draws("gaussian", X, 4, draws=100, seed=3, budget_s=100.0, clock=lambda: now[0])
    assert sizes == [1, 3, 4] and figures["draws"] == 8 and figures["seconds"] == 100.0
    plain, _ = references.random_draws("gaussian", X, 4, draws=8, seed=3, clock=lambda: now[0])
    assert (figures["mean"], figures["best"]) == (plain["mean"], plain["best"])
    assert references.pass_size([], 5.0, 16) == 1 and references.pass_size([(1, 10.0)], 5.0, 16) == 0
    assert references.pass_size([(1, 1.0), (16, 2.5)], 1000.0, 16) == 16  # at most a full pass
    # from a shared pass of 4 maps in 27 s: one map alone still reads every tile (27 s does not
    # fit in 11 s), and 30 s hold 4 maps, 60 s hold 8
    assert [references.pass_size([(4, 27.0)], left, 16) for left in (11.0, 30.0, 60.0)] == [0, 4, 8]


def test_one_registry_serves_training_runs_and_jl_compare(monkeypatch):
    """A reference registered once is measured by a training run's references and by jl-compare's
    table alike, and an unknown name is refused in both with the same choices."""
    from omegaconf import OmegaConf

    from jl_lightning.apps.compare import method_rows
    from jl_lightning.baselines import registry
    from jl_lightning.baselines.references import reference_figures
    from jl_lightning.errors import JLInputError

    X = np.random.default_rng(0).normal(size=(30, 10))
    first_coordinates = np.eye(4, 10)  # a fixed map: its epsilon is brute-force computable
    monkeypatch.setitem(
        registry.REFERENCES,
        "first4",
        registry.Reference(
            "first4",
            "fitted",
            "nothing",
            fit=lambda points, k, **_: registry.Fitted(
                first_coordinates, 0.0, scaled=True, info={"epsilon_scaled": 0.5}
            ),
        ),
    )
    ratios = (X[:, :4] ** 2).sum(1) / (X**2).sum(1)
    expected = np.abs(ratios - 1).max()
    rows, maps, _ = method_rows(X, 4, "norms", ["first4"], OmegaConf.create({"draws": 3, "seed": 0}))
    assert [r["method"] for r in rows] == ["first4 (best scale)"]
    assert rows[0]["epsilon_best"] == pytest.approx(expected, rel=1e-9)
    figures = reference_figures(X, 4, "norms", draws=3, methods=["first4"])
    assert figures["first4"]["epsilon_scaled"] == 0.5 and "matrix" not in figures["first4"]
    for option, call in (
        ("baseline.methods", lambda: reference_figures(X, 4, methods=["fourier"])),
        ("compare.methods", lambda: registry.check_methods(["fourier"], "compare.methods")),
    ):
        with pytest.raises(JLInputError, match=f"{option}: unknown \\['fourier'\\]; choose from .*first4"):
            call()
    with pytest.raises(JLInputError, match="numax preserves pairwise distances"):
        registry.check_methods(["gaussian", "numax"], "compare.methods", "norms")


def test_every_configured_reference_is_registered():
    from jl_lightning.apps.config import compose
    from jl_lightning.baselines.registry import REFERENCES

    configured = set(compose().baseline.methods) | set(compose(config_name="compare").compare.methods)
    assert configured <= set(REFERENCES)
    assert {r.kind for r in REFERENCES.values()} == {"random", "fitted"}


def test_the_number_of_reference_draws_is_fixed_by_the_command_not_the_machine():
    """planned_draws from the pairs (or points) and k alone; reference_figures measures that many
    under any budget that does not bind (a slow and a fast machine alike), and says so when a
    budget cuts them."""
    from jl_lightning.baselines.references import REFERENCE_WORK, planned_draws, reference_figures

    assert planned_draws(100, 30, "norms", 1000) == 1000  # the paper's run: every draw
    assert planned_draws(10**5, 32, "pairs", 1000) == 1  # 5e9 pairs: one draw, as a pass costs a minute
    assert planned_draws(12000, 64, "pairs", 1000) == int(REFERENCE_WORK // (12000 * 11999 // 2 * 64))
    X = np.random.default_rng(0).standard_normal((40, 6))
    counts = {
        budget: reference_figures(X, 3, "pairs", draws=30, methods=["gaussian"], budget_s=budget)["gaussian"]
        for budget in (None, 60.0, 6000.0)
    }
    assert {figures["draws"] for figures in counts.values()} == {30}
    assert all("cut" not in figures for figures in counts.values())
    assert len({figures["best"] for figures in counts.values()}) == 1  # the same draws
    cut = reference_figures(X, 3, "pairs", draws=30, methods=["gaussian"], budget_s=1e-9)["gaussian"]
    assert cut["draws"] < 30 and cut["cut"].startswith("30 draws planned")
