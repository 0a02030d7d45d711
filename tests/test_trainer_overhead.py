"""The Trainer-overhead cuts keep Lightning's behaviour: hooks still know their name,
parameters still register, and profiling can be switched back on."""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from torch import nn

from jl_lightning.sampler import GaussianSampler
from jl_lightning.trainer_overhead import NullProfiler


def test_the_null_profiler_is_a_reusable_context_manager():
    profiler = NullProfiler()
    with profiler.profile("a") as first:
        with profiler.profile("b"):
            pass
    assert first is None and profiler.profile("c") is profiler.profile("d")


def test_hook_bookkeeping_is_stored_and_modules_still_register_parameters():
    model = GaussianSampler(k=2, dim=3)
    model._current_fx_name = "training_step"
    assert model._current_fx_name == "training_step" and "_current_fx_name" in vars(model)
    model.extra = nn.Parameter(torch.zeros(2))  # anything else still goes through nn.Module
    assert any(p is model.extra for p in model.parameters())


def test_jl_train_uses_it_and_an_override_brings_profiling_back(cfg_factory):
    from lightning.pytorch.profilers import SimpleProfiler

    default = instantiate(cfg_factory("debug=fast").trainer, logger=False)
    assert isinstance(default.profiler, NullProfiler)
    simple = instantiate(cfg_factory("debug=fast", "trainer.profiler=simple").trainer, logger=False)
    assert isinstance(simple.profiler, SimpleProfiler)
