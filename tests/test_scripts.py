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

    from jl_lightning.baselines.pca_metric import best_metric, metric_features

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
    bound, best, _ = best_metric(features, k)
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


def test_the_gpu_table_reads_every_step_of_gpu_checks(tmp_path, capsys):
    """scripts/gpu_table.py on the logs gpu_checks.sh writes: each probe, each exact pass of the
    500-step run and its summary become rows; a step that did not run says so."""
    import json

    import gpu_table

    (tmp_path / "device.txt").write_text("NVIDIA H100 80GB HBM3, 81559 MiB, 550.54\n")
    (tmp_path / "pytest_gpu.log").write_text("....\n========= 7 passed in 41.2s =========\n")
    (tmp_path / "scale.log").write_text(
        "{'n': 1000000, 'certify_s': 14.6, 'refresh_s': 18.5, 'extra_mb': 7300.0, 'step_s': 0.0023, "
        "'epsilon': 0.9, 'data_mb': 1465.0}\n"
    )
    (tmp_path / "default_1e6_train.log").write_text(
        "[x] step 14: exact pass over 499999500000 pairs in 19.2 s, epsilon 0.9861; 8192 pairs in the active set\n"
    )
    (tmp_path / "default_1e6_summary.json").write_text(
        json.dumps({"fit_seconds": 230.4, "best_distortion": 0.71, "steps": 500})
    )
    assert gpu_table.main([str(tmp_path)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[2] == "| device | NVIDIA H100 80GB HBM3, 81559 MiB, 550.54 |"
    assert "| GPU tests (tests/test_gpu.py) | 7 passed in 41.2s |" in table
    assert "| n = 1e+06: certifying / refresh pass, step | 14.6 s / 18.5 s, 2.3 ms (7300 MB beyond the data) |" in table
    assert "| 10^6 default run, exact pass at step 14 | 19.2 s over 5.00e+11 pairs, epsilon 0.9861 |" in table
    assert "| 10^6 default run, 500 steps | fit 230 s, certified epsilon 0.7100, steps 500 |" in table
    assert table[-1] == "| bench_ddp.py --gpu | did not run |"
