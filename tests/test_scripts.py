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
