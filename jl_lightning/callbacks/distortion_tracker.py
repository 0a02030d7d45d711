"""Exact deterministic distortion of M / sqrt(k) during training, the best M, and held-out figures."""

from __future__ import annotations

import time

import torch
from lightning.pytorch import Callback

from jl_lightning.log_schedule import is_log_step
from jl_lightning.distortion import DEFAULT_MEMORY_BUDGET, evaluate, heldout_reports


VAL_NAMES = {"points": "point_distortion", "pairs": "pair_distortion", "cross_pairs": "cross_pair_distortion"}


class DistortionTracker(Callback):
    """Every ``every_n_steps`` steps and at the end of training, evaluate the
    deterministic embedding M / sqrt(k) exactly (float64, all points or all pairs,
    as the model's ``mode``) on the DataModule's training points, log
    ``train/det_distortion`` and keep the best matrix (chosen on training points only).

    With a held-out split (``data.val_fraction``), it also logs the exact epsilon on
    the held-out points (``val/point_distortion``), on the held-out pairs
    (``val/pair_distortion``) and on the train x held-out pairs
    (``val/cross_pair_distortion``); ``final_heldout`` holds their final reports.

    ``best_embedding``, ``best_distortion``, ``best_step`` and ``final_report`` are
    read by ``jl-train`` to write embedding.npy and summary.json; ``history`` holds
    (step, seconds since the start of training, epsilon) of every evaluation.
    """

    def __init__(self, every_n_steps: int = 50, memory_budget: int = DEFAULT_MEMORY_BUDGET):
        super().__init__()
        self.every_n_steps = int(every_n_steps)
        self.memory_budget = int(memory_budget)
        self.best_embedding: torch.Tensor | None = None
        self.best_distortion = float("inf")
        self.best_step: int | None = None
        self.final_report = None
        self.final_heldout: dict | None = None
        self._points = None
        self._val_points = None
        self._mode = "norms"
        self.history: list[tuple[int, float, float]] = []  # (step, seconds since fit start, epsilon)
        self._started = time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        self._started = time.perf_counter()
        self._points = trainer.datamodule.points  # float64 numpy array
        self._val_points = getattr(trainer.datamodule, "val_points", None)
        self._mode = getattr(pl_module, "mode", "norms")

    def _evaluate(self, trainer, pl_module, log: bool):
        embedding = pl_module.embedding
        # the median and p99 only for the final report; during training epsilon is enough
        report = evaluate(embedding, self._points, self._mode, memory_budget=self.memory_budget,
                          quantiles=not log)
        self.history.append((int(trainer.global_step), time.perf_counter() - self._started, report.epsilon))
        if report.epsilon < self.best_distortion:
            self.best_distortion = report.epsilon
            self.best_embedding = embedding.detach().cpu().clone()
            self.best_step = trainer.global_step
        heldout = {} if self._val_points is None else heldout_reports(
            embedding, self._points, self._val_points, memory_budget=self.memory_budget, quantiles=not log)
        if log:
            pl_module.log("train/det_distortion", report.epsilon, on_step=True, on_epoch=False,
                          prog_bar=True)
            for name, held in heldout.items():
                pl_module.log(f"val/{VAL_NAMES[name]}", held.epsilon, on_step=True, on_epoch=False)
        else:
            self.final_heldout = heldout
        return report

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if is_log_step(trainer.global_step, self.every_n_steps):
            self._evaluate(trainer, pl_module, log=True)

    def on_train_end(self, trainer, pl_module) -> None:
        self.final_report = self._evaluate(trainer, pl_module, log=False)
        metrics = {"train/det_distortion": self.final_report.epsilon}
        metrics.update({f"val/{VAL_NAMES[name]}": held.epsilon for name, held in self.final_heldout.items()})
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
