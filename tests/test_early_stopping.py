"""Lightning's EarlyStopping on the certified epsilon: a run stops once its best has stopped
improving, exports the best certified matrix, and says so; splitting the run into epochs of
one certification period changes nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from jl_lightning.apps.config import compose
from jl_lightning.apps.train import train
from jl_lightning.lightning.fit import resolve_auto

SMALL = [
    "data.source.n=40",
    "data.source.d=80",
    "model.k=10",
    "trainer.max_steps=300",
    "baseline.draws=0",
    "log_every=20",
    "logger=none",
    "~callbacks.run_figures",
    "~callbacks.tensorboard_report",
]


def norms_epsilon(A: np.ndarray, X: np.ndarray) -> float:
    """max_i |‖A x_i‖² / ‖x_i‖² - 1| by brute force."""
    return float(np.abs(((X @ A.T) ** 2).sum(1) / (X**2).sum(1) - 1).max())


FORCED = ["callbacks.early_stopping.min_delta=10", "callbacks.early_stopping.patience=2"]


def test_a_run_stops_after_patience_certifications_without_gain(cfg_factory):
    # switched to the deterministic mean within the first steps; min_delta above any epsilon:
    # the first certification sets the best, the next two do not beat it by min_delta, and the
    # run stops at the second of them (step 3 x 20)
    summary, objects = train(cfg_factory(*SMALL, *FORCED, "callbacks.deterministic_switch.threshold=0.99"))
    assert summary["switch_step"] < 20
    assert summary["steps"] == 60 and objects["trainer"].global_step == 60
    assert summary["early_stop"] == {
        "step": 60,
        "max_steps": 300,
        "monitor": "export/score",
        "patience": 2,
        "min_delta": 10.0,
    }
    history = summary["distortion_history"]
    assert [step for step, _, _ in history] == [20, 40, 60]
    # the export is still the best certified matrix, its epsilon checked by brute force
    exported = np.load(Path(summary["run_dir"]) / "embedding.npy")
    X = np.asarray(objects["datamodule"].points, dtype=np.float64)
    assert np.isclose(norms_epsilon(exported, X), summary["best_distortion"], rtol=1e-9)
    assert summary["best_distortion"] == min(eps for _, _, eps in history)


def test_no_run_stops_early_before_the_switch(cfg_factory):
    # the same forced criterion, but sigma^2 never reaches the switch: M is the mean of a
    # sampler still spreading, and the run takes every step
    summary, _ = train(cfg_factory(*SMALL, *FORCED, "callbacks.deterministic_switch.threshold=0", "model.variance=log"))
    assert summary["switch_step"] is None and summary["steps"] == 300 and summary["early_stop"] is None


def test_epochs_of_one_certification_leave_the_trajectory_unchanged(cfg_factory):
    # the default (epochs of log_every steps, a patience that never runs out) against one epoch
    # without early stopping: the same matrix, bit for bit
    split, _ = train(cfg_factory(*SMALL, "callbacks.early_stopping.patience=1000"))
    whole, _ = train(cfg_factory(*SMALL, "callbacks.early_stopping=null", "trainer.limit_train_batches=1.0"))
    assert split["early_stop"] is None and whole["early_stop"] is None
    assert split["steps"] == whole["steps"] == 300
    a, b = (np.load(Path(s["run_dir"]) / "embedding.npy") for s in (split, whole))
    assert a.tobytes() == b.tobytes()
    assert torch.equal(torch.tensor(split["final_distortion"]), torch.tensor(whole["final_distortion"]))


def test_the_default_patience_is_a_fifth_of_the_run_in_certifications():
    cases = {
        # (mode, n, steps, tracker period) -> patience: ceil(0.2 * steps / period), at least 3
        ("pairs", 1000, 5000, "auto"): 20,  # few pairs: certified every log_every = 50 steps
        ("pairs", 1000, 5000, 25): 40,  # a period set by hand counts as it is
        ("norms", 1000, 200, "auto"): 3,  # the floor
        ("pairs", 5000, 5000, "auto"): 1,  # many pairs: one certification, at the end
    }
    for (mode, n, steps, period), patience in cases.items():
        cfg = compose(
            [f"model.mode={mode}", f"trainer.max_steps={steps}", f"callbacks.distortion_tracker.every_n_steps={period}"]
        )
        resolved, settings = resolve_auto(cfg, n=n, dim=30)
        assert resolved.callbacks.early_stopping.patience == patience, (mode, n, steps, period)
        assert resolved.callbacks.early_stopping.min_delta == 1e-3
        # one epoch is one certification period: Lightning checks EarlyStopping at its end
        assert resolved.trainer.limit_train_batches == resolved.callbacks.distortion_tracker.every_n_steps
        assert settings["chosen"]["callbacks.early_stopping.patience"] == patience
    no_tracker = compose(["~callbacks.distortion_tracker", "~callbacks.best_checkpoint"])
    assert resolve_auto(no_tracker, n=100, dim=30)[0].trainer.limit_train_batches == 1.0  # one epoch
