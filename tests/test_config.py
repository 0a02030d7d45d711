"""Each config group and option does what conf/ and the README say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from jl_lightning.train import train

TINY = ["data.source.n=20", "data.source.d=30", "model.k=5", "model.n_samples=4",
        "trainer.max_steps=30", "baseline.draws=5", "log_every=10",
        "callbacks.model_checkpoint.every_n_train_steps=10"]


def test_experiment_paper_is_appendix_b(cfg_factory):
    cfg = cfg_factory("experiment=paper")
    assert (cfg.data.source.n, cfg.data.source.d, cfg.model.mode) == (100, 500, "norms")
    assert cfg.data.normalize == "auto"  # unit norm in norms mode
    assert (cfg.model.k, cfg.model.n_samples, cfg.model.variance) == (30, 20, "raw")
    assert (cfg.model.init_variance, cfg.model.init_mean, cfg.model.reg_weight) == (1.0, "zeros", 1.0)
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 0.01
    assert not cfg.scheduler  # constant learning rate
    assert cfg.trainer.max_steps == 5000
    assert cfg.callbacks.deterministic_switch.threshold == 0.0
    assert cfg.baseline.draws == 1000


def test_default_recipe_differs_from_the_paper_only_where_documented(cfg_factory):
    cfg = cfg_factory()
    assert cfg.scheduler._target_.endswith("CosineAnnealingLR") and cfg.scheduler.T_max == 5000
    assert cfg.callbacks.deterministic_switch.threshold == 1e-4
    assert (cfg.model.k, cfg.model.n_samples, cfg.optimizer.lr, cfg.trainer.max_steps) == (30, 20, 0.01, 5000)


def test_threads_option_sets_torch_threads(cfg_factory):
    before = torch.get_num_threads()
    try:
        summary = train(cfg_factory(*TINY, "threads=1", "logger=none"))
        assert summary["torch_threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_sgd_optimizer_and_constant_scheduler(cfg_factory, monkeypatch):
    seen = {}
    import jl_lightning.sampler as sampler

    original = sampler.GaussianSampler.configure_optimizers

    def spy(self):
        out = original(self)
        seen["out"] = out
        return out

    monkeypatch.setattr(sampler.GaussianSampler, "configure_optimizers", spy)
    train(cfg_factory(*TINY, "optimizer=sgd", "scheduler=constant", "logger=none"))
    assert isinstance(seen["out"], torch.optim.SGD)


def test_tensorboard_and_csv_loggers_together(cfg_factory):
    summary = train(cfg_factory(*TINY, "logger=tensorboard_csv"))
    run = Path(summary["run_dir"])
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "csv" / "metrics.csv").is_file()


def test_callbacks_none_still_reports_the_final_distortion(cfg_factory):
    summary = train(cfg_factory(*TINY[:-1], "callbacks=none", "logger=none"))
    assert summary["switch_step"] is None and summary["sigma2_crossings"] is None
    assert summary["best_distortion"] == summary["final_distortion"] > 0
    assert not (Path(summary["run_dir"]) / "checkpoints").exists()


def test_debug_fast_is_tiny(cfg_factory):
    summary = train(cfg_factory("debug=fast", "logger=none"))
    assert (summary["n"], summary["d"], summary["k"], summary["steps"]) == (20, 40, 8, 20)


def test_data_file_trains_on_the_file(cfg_factory, tmp_path):
    points = np.random.default_rng(0).standard_normal((25, 12))
    np.save(tmp_path / "mine.npy", points)
    summary = train(cfg_factory("data=file", f"data.source.path={tmp_path / 'mine.npy'}",
                                "model.k=4", "trainer.max_steps=30", "baseline.draws=5", "logger=none",
                                "log_every=10", "callbacks.model_checkpoint.every_n_train_steps=10"))
    assert (summary["n"], summary["d"]) == (25, 12)
    assert np.load(Path(summary["run_dir"]) / "embedding.npy").shape == (4, 12)


def test_progress_bar_only_on_interactive_runs(cfg_factory, monkeypatch):
    from lightning.pytorch.callbacks import TQDMProgressBar
    import lightning.pytorch as pl

    import jl_lightning.train as entry

    bars = []
    original_fit = pl.Trainer.fit

    def spy(self, *args, **kwargs):
        bars.append(any(isinstance(c, TQDMProgressBar) for c in self.callbacks))
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(pl.Trainer, "fit", spy)
    for interactive in (False, True):
        monkeypatch.setattr(entry, "_interactive", lambda: interactive)
        train(cfg_factory(*TINY, "logger=none"))
    assert bars == [False, True]
