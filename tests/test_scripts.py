"""The benchmark scripts build what they time from the configuration a fit uses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


@pytest.fixture(autouse=True)
def scripts_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(SCRIPTS))


def test_default_loss_is_the_loss_a_fit_of_that_size_resolves(cfg_factory):
    import benchlib

    from jl_lightning.lightning.fit import resolve_auto

    cfg = cfg_factory("model.mode=pairs", "model.k=16", "trainer.max_steps=5000", "model.loss.pair_strategy=exact")
    fitted, settings = resolve_auto(cfg, n=1797, dim=64)
    assert settings  # the defaults left something to choose
    loss = benchlib.default_loss("pairs", n=1797, d=64, k=16, steps=5000, pair_strategy="exact")
    assert loss == dict(fitted.model.loss)
    assert loss["active_hard"] == settings["chosen"]["model.loss.active_hard"]


def test_bench_step_builds_a_module_whose_objective_is_finite():
    import bench_step

    dm, model = bench_step.build(steps=20)
    loss, sampled, s2 = (t.detach() for t in model.objective(dm.train_points))
    assert torch.isfinite(loss) and float(sampled) > 0 and float(s2) == pytest.approx(1.0)


def test_probe_metric_lp_is_the_best_metric_of_a_row_space():
    """The LP's features give ||A s||^2 / ||s||^2 for every pair (numpy brute force); its
    optimum is no worse than the map's own epsilon on those pairs; and on points whose
    differences span only the map's row space it finds a distortion-free metric (epsilon 0)
    where the map itself is far from one."""
    import numpy as np
    from probe_metric import best_metric, metric_features

    rng = np.random.default_rng(0)
    k, d = 3, 8
    basis = np.linalg.qr(rng.standard_normal((d, k)))[0]
    points = rng.standard_normal((12, k)) @ basis.T  # differences span the k columns of basis
    A = rng.standard_normal((k, k)) @ basis.T  # the same row space, a distorting metric
    i, j = np.triu_indices(len(points), 1)
    diffs = points[i] - points[j]
    ratios = ((diffs @ A.T) ** 2).sum(1) / (diffs**2).sum(1)
    U = np.linalg.qr(A.T)[0]
    G = U.T @ A.T @ A @ U
    features = metric_features(points, i, j, U)
    np.testing.assert_allclose(features @ G[np.triu_indices(k)], ratios, rtol=1e-10)
    bound, best = best_metric(features, k)
    assert bound <= np.abs(ratios - 1).max() and np.abs(ratios - 1).max() > 0.5
    assert bound == pytest.approx(0.0, abs=1e-7)
    np.testing.assert_allclose(np.abs(features @ best[np.triu_indices(k)] - 1).max(), 0.0, atol=1e-7)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a GPU")
def test_gpu_checks_refuse_a_machine_without_a_gpu_in_one_line(tmp_path):
    import subprocess

    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "gpu"
    proc = subprocess.run(
        ["bash", str(root / "scripts" / "gpu_checks.sh"), str(out)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        "gpu_checks.sh: error: needs a CUDA GPU (torch sees none on this machine); run it where one is lent"
    ]
    assert not out.exists()
