"""Callbacks inside a real Trainer fit (in-process, small data)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jl_lightning.callbacks import DeterministicSwitch, DistortionTracker, VarianceMonitor
from jl_lightning.distortion import norm_distortion
from jl_lightning.train import train

SMALL = ["data.source.n=30", "data.source.d=60", "model.k=8", "model.n_samples=8",
         "baseline.draws=10", "logger=none", "log_every=10",
         "callbacks.model_checkpoint.every_n_train_steps=50"]


def fit(cfg_factory, *overrides):
    """Run train() in-process and hand back the trainer's pieces for inspection."""
    captured = {}
    import lightning.pytorch as pl

    original_fit = pl.Trainer.fit

    def spy(self, model, *args, **kwargs):
        captured["trainer"], captured["model"] = self, model
        return original_fit(self, model, *args, **kwargs)

    pl.Trainer.fit = spy
    try:
        summary = train(cfg_factory(*SMALL, *overrides))
    finally:
        pl.Trainer.fit = original_fit
    return summary, captured["trainer"], captured["model"]


def callback(trainer, cls):
    return next(c for c in trainer.callbacks if isinstance(c, cls))


def test_switch_fires_and_sigma2_is_exactly_zero_afterwards(cfg_factory):
    summary, trainer, model = fit(cfg_factory, "trainer.max_steps=150", "model.variance=log", "optimizer.lr=0.05",
                                  "callbacks.deterministic_switch.threshold=0.5")
    switch = callback(trainer, DeterministicSwitch)
    assert switch.switch_step is not None and 0 < switch.switch_step < 150
    assert summary["switch_step"] == switch.switch_step
    assert model.variance.value().item() == 0.0 and model.deterministic
    assert not model.variance.theta.requires_grad
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), name
    # after the switch the loss is the deterministic distortion of M / sqrt(k)
    points = trainer.datamodule.train_points
    loss, sampled, s2 = model.objective(points)
    det = norm_distortion(model.embedding, trainer.datamodule.points).epsilon
    assert float(s2) == 0.0
    assert float(loss.detach()) == pytest.approx(det, rel=1e-4, abs=1e-6)


def test_raw_sigma2_collapsing_to_zero_never_makes_nan(cfg_factory):
    """The paper's raw sigma^2 reaches exactly 0 under Adam; threshold 0 switches only then."""
    summary, trainer, model = fit(cfg_factory, "trainer.max_steps=400", "model.variance=raw",
                                  "callbacks.deterministic_switch.threshold=0.0", "scheduler=constant")
    assert summary["switch_step"] is not None, "raw sigma^2 should reach exactly 0 within 400 steps"
    assert summary["sigma2_final"] == 0.0
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert math.isfinite(summary["final_distortion"])


def test_variance_monitor_records_crossings_in_order(cfg_factory):
    summary, trainer, model = fit(cfg_factory, "trainer.max_steps=300", "model.variance=raw",
                                  "scheduler=constant", "callbacks.deterministic_switch.threshold=0")
    crossings = callback(trainer, VarianceMonitor).crossings
    assert crossings == summary["sigma2_crossings"]
    steps = [crossings[t] for t in ("0.1", "0.01", "0.001")]
    assert all(s is not None for s in steps), crossings
    assert steps == sorted(steps)
    logged = trainer.callback_metrics
    assert "variance/sigma2" in logged and "variance/decay" in logged


def test_tracker_keeps_the_best_matrix(cfg_factory):
    summary, trainer, model = fit(cfg_factory, "trainer.max_steps=200")
    tracker = callback(trainer, DistortionTracker)
    assert tracker.best_distortion == pytest.approx(summary["best_distortion"])
    assert summary["best_distortion"] <= summary["final_distortion"]
    again = norm_distortion(tracker.best_embedding, trainer.datamodule.points).epsilon
    assert again == pytest.approx(tracker.best_distortion, rel=1e-12)


def test_logged_values_belong_to_their_step(cfg_factory, tmp_path):
    """CSV rows are written at multiples of log_every and hold that step's sigma^2."""
    summary, trainer, model = fit(cfg_factory, "trainer.max_steps=40", "logger=csv",
                                  "model.variance=log", "callbacks.deterministic_switch.threshold=0")
    import csv

    path = next(iter(trainer.loggers)).log_dir + "/metrics.csv"
    rows = list(csv.DictReader(open(path)))
    logged_steps = sorted({int(r["step"]) for r in rows if r.get("train/sigma2")})
    assert logged_steps == [9, 19, 29, 39]  # Lightning's 0-based batch index of steps 10, 20, 30, 40
    last = [r for r in rows if r.get("train/sigma2") and int(r["step"]) == 39][0]
    # train/sigma2 is the value used in step 40's loss; variance/sigma2 the value after it
    assert float(last["variance/sigma2"]) <= float(last["train/sigma2"])
    assert float(last["variance/sigma2"]) == pytest.approx(summary["sigma2_final"], rel=1e-6)


def test_direct_optimization_control_is_a_config(cfg_factory):
    """sigma^2 fixed at 0 from one Gaussian draw: the switch fires before the first step."""
    summary, trainer, model = fit(cfg_factory, "trainer.max_steps=50", "model.init_variance=0.0",
                                  "model.init_mean=gaussian", "callbacks.deterministic_switch.threshold=0")
    assert summary["switch_step"] == 0
    assert np.isfinite(summary["final_distortion"])
