"""What TensorBoard shows beyond the scalars: a Custom Scalars layout and the HParams table."""

from __future__ import annotations

import time

from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.tensorboard.summary import hparams

from jl_lightning.lightning.contract import RunRecord
from jl_lightning.metrics.distortion import HELDOUT_NAMES

# Custom Scalars: tags are regular expressions, so the charts hold whatever the run logged.
# TensorBoard colours a chart's lines by run, not by tag, so a chart holds few lines; the
# switch has its own 0/1 chart (beside sigma^2, "ignore outliers" would clip it away).
LAYOUT = {
    "distortion": {
        "exact epsilon: training and held-out": ["Multiline", [r"1_distortion/(train|val_.*)"]],
        "training epsilon, best Gaussian draw, best-scaled PCA": [
            "Multiline",
            [r"1_distortion/train", r"reference/gaussian_best", r"reference/pca_scaled"],
        ],
        "training loss": ["Multiline", [r"train/loss", r"train/sampled_distortion"]],
    },
    "variance": {
        "sigma^2 (log10)": ["Multiline", [r"2_variance/log10_sigma2"]],
        "the switch (0: sampling, 1: deterministic mean)": ["Multiline", [r"2_variance/deterministic"]],
        "sigma^2": ["Multiline", [r"2_variance/sigma2"]],
    },
}


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
      held-out curves, against the best references, the loss, sigma^2 and the switch;
    * at the start, the HParams session: the curated settings ``fit_from_config`` gave the
      loggers (``fit.run_hyperparameters``: k, mode, lr, N, temperatures, penalty, steps, the
      data, what the command line changed), so a running or crashed run has its row; the
      logger needs ``default_hp_metric: false`` (conf/logger/tensorboard.yaml);
    * at the end (``contract.ReadsRunRecord``), the metrics of :func:`hp_metrics` under the
      last step and the session's end. The HParams table's metric columns are the runs'
      scalar tags, each at its last value.
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
        for logger in self._tensorboards(trainer):
            logger.experiment.add_custom_scalars(LAYOUT)
            if trainer.global_step == 0:  # a resumed run has its row already
                # the row at the start, so a running or crashed run is in the table
                logger.experiment.file_writer.add_summary(self._session(logger)[0], 0)

    @staticmethod
    def _session(logger) -> tuple:
        """(start, end) of the run's HParams session: the curated settings fit_from_config gave
        the loggers (``fit.run_hyperparameters``).

        No "experiment" summary is written. Without one, TensorBoard builds the table from all
        the runs it reads, marks the settings that differ between them (a sweep's parameters)
        and shows those first, with the first metrics in tag order (``1_distortion/...``: the
        final training and held-out epsilon). With one, it takes a single run's list,
        alphabetical, and shows its first five settings, constants as likely as not.
        """
        _, start, end = hparams(dict(logger.hparams), {})
        return start, end

    def on_run_record(self, trainer, pl_module, record: RunRecord) -> None:
        self.metrics = hp_metrics(record.summary, time.perf_counter() - self._started)
        for logger in self._tensorboards(trainer):
            logger.log_metrics(self.metrics, step=trainer.global_step)
            logger.experiment.file_writer.add_summary(self._session(logger)[1], trainer.global_step)
