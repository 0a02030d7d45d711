"""The random and PCA references as flat lines beside the learned distortion in TensorBoard."""

from __future__ import annotations

from lightning.pytorch import Callback

from jl_lightning.baselines import reference_scalars


class ReferenceLines(Callback):
    """Log ``reference/<method>_mean``, ``reference/<method>_best``, ``reference/pca`` and
    ``reference/pca_scaled`` at the first and the last step, so each is a flat line over the
    run. With TensorBoard, a custom-scalars chart ("distortion vs references") overlays them
    on ``train/det_distortion``.

    ``jl-train`` computes the figures once (``baselines.reference_figures``) and hands them
    over with :meth:`set_references` before training; summary.json carries the same numbers.
    """

    def __init__(self):
        super().__init__()
        self.references: dict | None = None

    def set_references(self, references: dict) -> None:
        self.references = references

    def _log(self, trainer, step: int) -> None:
        if not self.references:
            return
        scalars = reference_scalars(self.references)
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)

    def on_train_start(self, trainer, pl_module) -> None:
        if not self.references:
            return
        from lightning.pytorch.loggers import TensorBoardLogger

        layout = {"distortion": {"learned vs references": [
            "Multiline", ["train/det_distortion", *reference_scalars(self.references)]]}}
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_custom_scalars(layout)
        self._log(trainer, trainer.global_step)

    def on_train_end(self, trainer, pl_module) -> None:
        self._log(trainer, trainer.global_step)
