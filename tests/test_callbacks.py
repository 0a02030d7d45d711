"""Callbacks inside a real Trainer fit (in-process, small data)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from jl_lightning.lightning.callbacks import DeterministicSwitch, DistortionTracker, VarianceMonitor
from jl_lightning.metrics import evaluate
from jl_lightning.apps.train import train

SMALL = ["data.source.n=30", "data.source.d=60", "model.k=8", "model.n_samples=8",
         "baseline.draws=10", "logger=none", "log_every=10",
         "callbacks.model_checkpoint.every_n_train_steps=50"]


def fit(cfg_factory, *overrides):
    """Run train() in-process; its (summary, trainer, model) for inspection."""
    summary, objects = train(cfg_factory(*SMALL, *overrides))
    return summary, objects["trainer"], objects["model"]


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
    det = evaluate(model.embedding, trainer.datamodule.points, "norms").epsilon
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
    # the best is the smallest of every evaluation, and it is the matrix that was exported
    assert tracker.best_distortion == min(eps for _, _, eps in tracker.history)
    exported = np.load(f"{summary['run_dir']}/embedding.npy")
    np.testing.assert_array_equal(exported, tracker.best_embedding.double().numpy())
    X = trainer.datamodule.points
    ratios = ((X @ exported.T) ** 2).sum(1) / (X ** 2).sum(1)
    assert np.abs(ratios - 1).max() == pytest.approx(tracker.best_distortion, rel=1e-9)


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


# ------------------------------------------------------------------ the contract
class MinimalModule:
    """Only the module contract (jl_lightning/lightning/contract.py), nothing of Lightning."""

    k, dim, mode = 2, 3, "norms"

    def __init__(self, matrix, sigma2):
        self._matrix, self._sigma2, self.logged = torch.as_tensor(matrix, dtype=torch.float64), sigma2, {}

    @property
    def embedding(self):
        return self._matrix

    @property
    def deterministic(self):
        return self._sigma2 == 0.0

    def sigma2(self):
        return self._sigma2

    def freeze_variance(self):
        self._sigma2 = 0.0

    def run_report(self):
        return None

    def log_dict(self, metrics, **kwargs):
        self.logged.update(metrics)


class MinimalData:
    """Only the data contract."""

    name, duplicates, data_scale = "three points", None, 1.0

    def __init__(self, points, val_points=None):
        self.points, self.val_points = points, val_points
        self.val_index = None if val_points is None else np.arange(len(val_points))


def test_every_callback_works_against_the_bare_contract():
    from types import SimpleNamespace

    from jl_lightning.lightning.callbacks import ReferenceLines, RunSummary
    from jl_lightning.lightning.contract import JLData, JLModule

    X = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 1.0]])
    A = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    module, data = MinimalModule(A, 0.05), MinimalData(X, val_points=X[:2] * 3)
    assert isinstance(module, JLModule) and isinstance(data, JLData)
    callbacks = [VarianceMonitor(thresholds=(0.1, 0.01), every_n_steps=1), DeterministicSwitch(threshold=0.01),
                 DistortionTracker(every_n_steps=1), ReferenceLines(draws=3, methods=["gaussian"]), RunSummary()]
    trainer = SimpleNamespace(global_step=0, max_steps=2, datamodule=data, loggers=[], callbacks=callbacks)
    for cb in callbacks:
        cb.on_fit_start(trainer, module)
        cb.on_train_start(trainer, module)
    for step, s2 in ((1, 0.05), (2, 0.005)):
        trainer.global_step, module._sigma2 = step, s2
        for cb in callbacks:
            cb.on_train_batch_end(trainer, module, None, None, step - 1)
    for cb in callbacks:
        cb.on_train_end(trainer, module)
        cb.on_fit_end(trainer, module)
    summary = callbacks[-1].summary
    # brute force: ratios 1, 0.25, 1.25/3 -> epsilon 0.75 on the points
    assert summary["final_distortion"] == pytest.approx(0.75)
    assert summary["switch_step"] == 2 and module.deterministic
    assert summary["sigma2_crossings"] == {"0.1": 1, "0.01": 2}
    assert summary["heldout"]["points"]["epsilon"] == pytest.approx(0.75)
    assert summary["baseline_gaussian"]["draws"] == 3
    assert module.logged["train/det_distortion"] == pytest.approx(0.75)
    np.testing.assert_array_equal(callbacks[-1].embedding, A)
