"""Exact deterministic distortion of M / sqrt(k) during training, and the best M."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback

from jl_lightning.log_schedule import is_log_step
from jl_lightning.distortion import DEFAULT_MEMORY_BUDGET, norm_distortion


class DistortionTracker(Callback):
    """Every ``every_n_steps`` steps and at the end of training, evaluate the
    deterministic embedding M / sqrt(k) exactly (float64, all points) on the
    DataModule's points, log ``train/det_distortion`` and keep the best matrix.

    ``best_embedding``, ``best_distortion``, ``best_step`` and ``final_report``
    are read by ``jl-train`` to write embedding.npy and summary.json.
    """

    def __init__(self, every_n_steps: int = 50, memory_budget: int = DEFAULT_MEMORY_BUDGET):
        super().__init__()
        self.every_n_steps = int(every_n_steps)
        self.memory_budget = int(memory_budget)
        self.best_embedding: torch.Tensor | None = None
        self.best_distortion = float("inf")
        self.best_step: int | None = None
        self.final_report = None
        self._points = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._points = trainer.datamodule.points  # float64 numpy array

    def _evaluate(self, trainer, pl_module, log: bool):
        embedding = pl_module.embedding
        # the median and p99 only for the final report; during training epsilon is enough
        report = norm_distortion(embedding, self._points, memory_budget=self.memory_budget,
                                 quantiles=not log)
        if report.epsilon < self.best_distortion:
            self.best_distortion = report.epsilon
            self.best_embedding = embedding.detach().cpu().clone()
            self.best_step = trainer.global_step
        if log:
            pl_module.log("train/det_distortion", report.epsilon, on_step=True, on_epoch=False,
                          prog_bar=True)
        return report

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if is_log_step(trainer.global_step, self.every_n_steps):
            self._evaluate(trainer, pl_module, log=True)

    def on_train_end(self, trainer, pl_module) -> None:
        self.final_report = self._evaluate(trainer, pl_module, log=False)
        for logger in trainer.loggers:
            logger.log_metrics({"train/det_distortion": self.final_report.epsilon}, step=trainer.global_step)
