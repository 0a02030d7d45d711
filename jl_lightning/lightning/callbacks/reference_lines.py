"""The random and PCA references, measured once on the training data and drawn as flat lines."""

from __future__ import annotations

import logging
import time

from lightning.pytorch import Callback

from jl_lightning.baselines.references import (
    REFERENCE_METHODS,
    reference_figures,
    reference_scalars,
)
from jl_lightning.baselines.registry import check_methods
from jl_lightning.constraints import Number, check
from jl_lightning.lightning.log_schedule import log_at

log = logging.getLogger("jl_lightning")


SHARED_PASS = {"gaussian": "the Gaussian draws' last pass", "first_pass": "the first draws' pass"}


def log_reference(name: str, figures: dict) -> None:
    """One method's line, as soon as it is measured."""
    if "mean" in figures:
        log.info("reference %s over %d draws: mean %.4g, best %.4g (%.1f s)%s",
                 name, figures["draws"], figures["mean"], figures["best"], figures["seconds"],
                 f"; {figures['cut']}" if "cut" in figures else "")  # fmt: skip
    elif "epsilon" in figures:
        shared = figures.get("pass_shared_with")
        log.info("reference %s: %.4g, best-scaled %.4g (%.1f s%s)", name, figures["epsilon"],
                 figures["epsilon_scaled"], figures["seconds"],
                 f"; its exact pass shared with {SHARED_PASS.get(shared, shared)}" if shared else "")  # fmt: skip
    elif "skipped" in figures:
        log.warning("reference %s skipped: %s", name, figures["skipped"])


class ReferenceLines(Callback):
    """Measure the references on the data's training points, in the module's mode and k, when
    the fit starts: mean / best / std over ``draws`` draws of each random method (fewer at
    scale, a count fixed by the data and options, ``references.planned_draws``; fewer still
    only where the random methods' ``budget_s`` cap runs out first, and then the log and
    summary.json say so) and PCA plain and best-scaled (``baselines/references.py``); ``draws: 0``
    measures none.

    They are logged as ``reference/<method>_mean``, ``reference/<method>_best``,
    ``reference/pca`` and ``reference/pca_scaled`` at the first and the last step, so each is
    a flat line over the run (TensorBoardReport's custom-scalars chart overlays them on the
    learned epsilon). ``run_results()`` gives the same figures to summary.json
    (``references``, and ``baseline_gaussian``) and the best draw of each random method and
    PCA's best-scaled matrix to the run's figures (``reference_maps``).
    """

    def __init__(self, draws: int = 1000, seed: int = 0, methods=REFERENCE_METHODS, budget_s: float | None = 600.0):
        super().__init__()
        self.draws, self.seed = int(draws), int(seed)
        self.methods = check_methods(methods, "baseline.methods")
        check(
            "baseline.budget_s",
            budget_s,
            Number(low=0, low_open=True, none=True, what="a number of seconds > 0, or null for no budget"),
        )
        self.budget_s = None if budget_s is None else float(budget_s)
        self.references: dict = {}
        self.maps: dict = {}
        self.seconds = 0.0

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.draws <= 0 or not trainer.is_global_zero:  # measured once, by the process that reports
            return
        started = time.perf_counter()
        log.info("references: %s on %d points, within %s", ", ".join(self.methods), len(trainer.datamodule.points),
                 "no time budget" if self.budget_s is None else f"{self.budget_s:g} s")  # fmt: skip
        self.references = reference_figures(
            trainer.datamodule.points,
            pl_module.k,
            pl_module.mode,
            draws=self.draws,
            seed=self.seed,
            methods=self.methods,
            budget_s=self.budget_s,
            best_maps=self.maps,
            device=pl_module.embedding.device,
            on_method=log_reference,
        )
        self.seconds = time.perf_counter() - started
        log.info("references measured in %.1f s", self.seconds)

    def _log(self, trainer) -> None:
        log_at(trainer, reference_scalars(self.references), trainer.global_step)

    def on_train_start(self, trainer, pl_module) -> None:
        if self.references:
            self._log(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.references:
            self._log(trainer)

    def run_results(self) -> dict:
        return {
            "references": self.references,
            "baseline_gaussian": self.references.get("gaussian"),
            "reference_seconds": self.seconds,
            "reference_maps": dict(self.maps),
        }
