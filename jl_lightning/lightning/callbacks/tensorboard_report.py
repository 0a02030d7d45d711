"""What TensorBoard shows beyond the scalars: a Custom Scalars layout and the HParams table."""

from __future__ import annotations

import math
import time

from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from jl_lightning.lightning.contract import RunRecord
from jl_lightning.metrics.distortion import HELDOUT_NAMES

# Custom Scalars: tags are regular expressions, so the charts hold whatever the run logged
LAYOUT = {
    "distortion": {
        "learned vs references": ["Multiline", [r"train/det_distortion", r"val/.*_distortion", r"reference/.*"]],
        "training loss": ["Multiline", [r"train/loss", r"train/sampled_distortion"]],
    },
    "variance": {
        "sigma^2 (log10) and the switch": ["Multiline", [r"variance/log10_sigma2", r"variance/deterministic"]],
        "sigma^2": ["Multiline", [r"variance/sigma2"]],
    },
}


HP_METRICS = ("hp/final_distortion", "hp/best_distortion", "hp/converged", "hp/wall_seconds")
HELDOUT_METRICS = tuple(f"hp/{name}" for name in HELDOUT_NAMES.values())


def hp_metrics(summary: dict, seconds: float) -> dict[str, float]:
    """The HParams tab's metrics of a finished run: final and best exact epsilon, each
    held-out figure where there is a split, and the run's wall seconds."""
    metrics = {"hp/final_distortion": summary["final_distortion"], "hp/best_distortion": summary["best_distortion"]}
    for name, report in (summary.get("heldout") or {}).items():
        metrics[f"hp/{HELDOUT_NAMES[name]}"] = report["epsilon"]
    metrics["hp/converged"] = 1.0 if summary.get("converged", True) else 0.0  # sigma^2 reached 0
    metrics["hp/wall_seconds"] = seconds
    return {name: float(value) for name, value in metrics.items()}


class TensorBoardReport(Callback):
    """With a TensorBoard logger (others are left alone):

    * at the start, the Custom Scalars layout ``LAYOUT``: the learned epsilon with its
      held-out curves and the references in one chart, the loss, sigma^2 and the switch;
    * at the start, the HParams row: the curated settings ``fit_from_config`` gave the loggers
      (``fit.run_hyperparameters``: k, mode, lr, N, temperatures, penalty, steps, the data, what
      the command line changed), with the metric columns declared (NaN until the end), so a
      running or crashed run has its row; the logger needs ``default_hp_metric: false``
      (conf/logger/tensorboard.yaml);
    * at the end (``contract.ReadsRunRecord``), the metrics of :func:`hp_metrics` under the
      last step, which the HParams table shows.
    """

    def __init__(self):
        super().__init__()
        self._started = time.perf_counter()
        self.metrics: dict[str, float] = {}

    @staticmethod
    def _tensorboards(trainer) -> list[TensorBoardLogger]:
        return [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._started = time.perf_counter()  # before the references: the run's wall time

    def on_train_start(self, trainer, pl_module) -> None:
        heldout = getattr(trainer.datamodule, "val_points", None) is not None
        names = HP_METRICS + (HELDOUT_METRICS if heldout else ())
        for logger in self._tensorboards(trainer):
            logger.experiment.add_custom_scalars(LAYOUT)
            if trainer.global_step == 0:  # a resumed run has its row already
                # the row at the start (the curated settings fit_from_config gave the loggers),
                # so a running or crashed run is in the table; its metrics come at the end
                logger.log_hyperparams(dict(logger.hparams), metrics={name: math.nan for name in names})

    def on_run_record(self, trainer, pl_module, record: RunRecord) -> None:
        self.metrics = hp_metrics(record.summary, time.perf_counter() - self._started)
        for logger in self._tensorboards(trainer):
            logger.log_metrics(self.metrics, step=trainer.global_step)
