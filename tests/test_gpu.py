"""GPU path: skipped where CUDA is absent (CI and the project's CPU machines)."""

from __future__ import annotations

import pytest
import torch

from jl_lightning.apps.train import train

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_trainer_gpu_learns_like_cpu(cfg_factory):
    summary, _ = train(cfg_factory("trainer=gpu", "data.source.n=40", "data.source.d=80", "model.k=10",
                                "trainer.max_steps=600", "baseline.draws=50", "logger=none",
                                "log_every=20", "callbacks.model_checkpoint.every_n_train_steps=100"))
    assert summary["final_distortion"] < summary["baseline_gaussian"]["mean"] / 4


def test_full_batch_moves_to_the_device_once():
    from jl_lightning.io.sources import GaussianPoints
    from jl_lightning.lightning.datamodule import JLDataModule

    dm = JLDataModule(GaussianPoints(n=10, d=20))
    dm.setup()
    device = torch.device("cuda", 0)
    first = dm.transfer_batch_to_device(dm.train_points, device, 0)
    assert first.is_cuda and dm.transfer_batch_to_device(dm.train_points, device, 0) is first
