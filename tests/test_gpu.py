"""GPU path: skipped where CUDA is absent (CI and the project's CPU machines)."""

from __future__ import annotations

import pytest
import torch

from jl_lightning.apps.train import train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_trainer_gpu_learns_like_cpu(cfg_factory):
    """The same recipe on the GPU and on the CPU: both learn far below the Gaussian draws and
    end near each other (the noise streams differ between devices, so not bit for bit)."""
    common = (
        "data.source.n=40",
        "data.source.d=80",
        "model.k=10",
        "trainer.max_steps=600",
        "baseline.draws=50",
        "logger=none",
        "log_every=20",
        "callbacks.model_checkpoint.every_n_train_steps=100",
    )
    gpu, _ = train(cfg_factory("trainer=gpu", *common))
    cpu, _ = train(cfg_factory(*common))
    assert gpu["device"] == torch.cuda.get_device_name(0) and cpu["device"] == "cpu"
    assert gpu["final_distortion"] < gpu["baseline_gaussian"]["mean"] / 4
    assert cpu["final_distortion"] < cpu["baseline_gaussian"]["mean"] / 4
    assert gpu["best_distortion"] == pytest.approx(cpu["best_distortion"], rel=0.5)
    assert gpu["switch_step"] is not None and cpu["switch_step"] is not None


def test_full_batch_moves_to_the_device_once():
    from jl_lightning.io.sources import GaussianPoints
    from jl_lightning.lightning.datamodule import JLDataModule

    dm = JLDataModule(GaussianPoints(n=10, d=20))
    dm.setup()
    device = torch.device("cuda", 0)
    first = dm.transfer_batch_to_device(dm.train_points, device, 0)
    assert first.is_cuda and dm.transfer_batch_to_device(dm.train_points, device, 0) is first


def test_screened_pass_on_the_gpu_equals_the_cpu_pass():
    import numpy as np

    from jl_lightning.io.sources import ClustersPoints
    from jl_lightning.metrics import evaluate

    # one tile of 5000^2 pairs, rechecked in float64 in two blocks of rows
    points = ClustersPoints(n=5000, d=64, seed=0).load()
    A = np.random.default_rng(1).standard_normal((8, 64)) / np.sqrt(8)
    cpu = evaluate(A, points, "pairs", screen=True, worst=50)
    gpu = evaluate(torch.as_tensor(A, device="cuda"), points, "pairs", screen=True, worst=50)
    assert gpu.epsilon == pytest.approx(cpu.epsilon, abs=1e-12)
    assert gpu.worst_index == cpu.worst_index and gpu.count == cpu.count
    np.testing.assert_allclose(gpu.worst[2], cpu.worst[2], atol=1e-12)


def test_references_on_the_gpu_equal_the_cpu():
    from jl_lightning.baselines import reference_figures
    from jl_lightning.io.sources import ClustersPoints

    points = ClustersPoints(n=3000, d=64, seed=0).load()
    kwargs = dict(mode="pairs", draws=20, methods=("gaussian", "pca"))
    cpu = reference_figures(points, 8, **kwargs)
    gpu = reference_figures(points, 8, device=torch.device("cuda"), **kwargs)
    for key in ("mean", "best"):
        assert gpu["gaussian"][key] == pytest.approx(cpu["gaussian"][key], abs=1e-12)
    assert gpu["pca"]["epsilon_scaled"] == pytest.approx(cpu["pca"]["epsilon_scaled"], abs=1e-12)


def test_candidates_on_the_gpu_equal_the_cpu_ones():
    """The pass's float32-ranked candidates on CUDA: the CPU pass's pairs, up to float32
    rounding at the boundary (the two GEMMs round differently)."""
    import numpy as np

    from jl_lightning.io.sources import ClustersPoints
    from jl_lightning.metrics import evaluate

    points = ClustersPoints(n=4000, d=64, seed=0).load()
    A = np.random.default_rng(2).standard_normal((8, 64)) / np.sqrt(8)
    C = 20000
    cpu = evaluate(A, points, "pairs", screen=True, worst=50, candidates=C).candidates
    gpu = evaluate(torch.as_tensor(A, device="cuda"), points, "pairs", screen=True, worst=50, candidates=C).candidates
    np.testing.assert_allclose(gpu[2], cpu[2], rtol=1e-4)
    same = set(zip(gpu[0].tolist(), gpu[1].tolist())) & set(zip(cpu[0].tolist(), cpu[1].tolist()))
    assert len(same) >= 0.99 * C


def test_recall_on_the_gpu_equals_the_cpu():
    """recall@10 with the points on the host and the tiles on CUDA (what a GPU run's summary
    does): the CPU's neighbours exactly, over several tiles and with repeated points."""
    import numpy as np

    from jl_lightning.io.sources import ClustersPoints
    from jl_lightning.metrics.neighbors import original_neighbors, recall_at_k

    points = ClustersPoints(n=20000, d=64, seed=0).load()
    points[100:120] = points[7]  # ties at the K-th place for some queries
    A = np.random.default_rng(3).standard_normal((8, 64)) / np.sqrt(8)
    cpu = original_neighbors(points, 10, queries=300)
    assert np.array_equal(original_neighbors(points, 10, queries=300, device="cuda"), cpu)
    assert recall_at_k(A, points, 10, queries=300, device="cuda") == recall_at_k(A, points, 10, queries=300)


def test_clusters_recipe_with_candidates_runs_on_the_gpu(cfg_factory):
    """experiment=clusters_1e6's recipe (candidates, rescans, late passes) at small n on CUDA."""
    summary, _ = train(
        cfg_factory(
            "experiment=clusters_1e6",
            "data.source.n=500",
            "data.source.d=48",
            "data.source.clusters=8",
            "data.source.cache_dir=null",
            "model.k=8",
            "model.loss.active_hard=256",
            "model.loss.active_random=1000",
            "model.loss.active_candidates=4096",
            "model.loss.active_rescan=5",
            "model.loss.active_refresh=20",
            "model.loss.active_refresh_extra=[300,350]",
            "scheduler.T_max=450",
            "trainer.max_steps=400",
            "logger=none",
            "seed=0",
        )
    )
    assert summary["final_distortion"] < 0.75 * summary["references"]["gaussian"]["best"]
    assert summary["final_report"]["count"] == 400 * 399 // 2
    assert 0 < summary["recall"]["learned"] <= 1 and summary["device"] != "cpu"
