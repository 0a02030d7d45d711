"""Exact deterministic distortion of M / sqrt(k) during training, the best M, and held-out figures."""

from __future__ import annotations

import time

import torch
from lightning.pytorch import Callback

from jl_lightning.core.pairs import DEFAULT_MEMORY_BUDGET
from jl_lightning.errors import JLRunError
from jl_lightning.lightning.contract import EPSILON, SELECT_EPSILON, heldout_tag
from jl_lightning.lightning.distributed import exact_report
from jl_lightning.lightning.log_schedule import is_log_step, log_at
from jl_lightning.metrics.distortion import HELDOUT_NAMES, NonFiniteDistortion


class DistortionTracker(Callback):
    """Every ``every_n_steps`` steps and at the end of training, evaluate the deterministic
    embedding M / sqrt(k) exactly (float64, all points or all pairs, as the module's
    ``mode``) on the data's training ``points``, log ``1_distortion/train`` and keep the
    best matrix (chosen on training points only).

    With held-out points (``data.val_fraction``), it also logs the exact epsilon on the
    held-out points (``1_distortion/val_points``), on their pairs (``1_distortion/val_pairs``)
    and on the train x held-out pairs (``1_distortion/val_train_pairs``); their names in the
    run's history and summary are ``metrics.distortion.HELDOUT_NAMES``' (``contract.HELDOUT_TAGS``).

    ``run_results()`` hands RunSummary the best matrix and its step, the final reports,
    ``history``: (step, seconds since the start of training, epsilon) of every evaluation,
    and ``heldout_history``: (step, {name: epsilon}) of the held-out figures.

    Each figure is logged under the step count of the matrix it measures; the training
    epsilon is also given to Lightning (``logger=False``) for the progress bar and
    ``ModelCheckpoint``'s monitor.
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
        self.history: list[tuple[int, float, float]] = []
        self.heldout_history: list[tuple[int, dict]] = []
        # with selection points (data.select_fraction): the best matrix is chosen on them
        self.best_selection: float | None = None
        self.selection_history: list[tuple[int, float]] = []
        self._started = time.perf_counter()
        self._final_step: int | None = None  # the step final_report describes
        self._last_score: float | None = None  # what chose (or not) the latest evaluation's matrix

    def on_train_start(self, trainer, pl_module) -> None:
        self._started = time.perf_counter()

    def _report(self, trainer, pl_module, final: bool):
        """The exact report of M / sqrt(k) on the training points (and the held-out ones); the
        median and p99 only for the final report, during training epsilon is enough."""
        data = trainer.datamodule
        try:
            return exact_report(
                pl_module.embedding,
                data.points,
                pl_module.mode,
                memory_budget=self.memory_budget,
                quantiles=final,
                heldout=data.val_points,
            )
        except NonFiniteDistortion:
            raise JLRunError(
                f"training diverged by step {trainer.global_step}: the matrix holds NaN or Inf "
                "(a smaller optimizer.lr may help); nothing was exported"
            ) from None

    def _evaluate(self, trainer, pl_module, final: bool):
        data = trainer.datamodule
        embedding = pl_module.embedding
        report = self._report(trainer, pl_module, final)
        step = int(trainer.global_step)
        self.history.append((step, time.perf_counter() - self._started, report.epsilon))
        metrics = {EPSILON: report.epsilon}
        if report.heldout:
            held = {HELDOUT_NAMES[name]: r.epsilon for name, r in report.heldout.items()}
            self.heldout_history.append((step, held))
            metrics.update({heldout_tag(name): eps for name, eps in held.items()})
        score = self._selection(data, embedding, pl_module.mode)
        if score is not None:
            metrics[SELECT_EPSILON] = score
            self.selection_history.append((step, score))
        log_at(trainer, metrics, step)
        self._last_score = report.epsilon if score is None else score
        better = (
            report.epsilon < self.best_distortion
            if score is None
            else (self.best_selection is None or score < self.best_selection)
        )
        if better:
            self.best_distortion, self.best_selection = report.epsilon, score
            self.best_embedding = embedding.detach().cpu().clone()
            self.best_step = int(trainer.global_step)
        return report

    def _selection(self, data, embedding, mode: str) -> float | None:
        """The exact epsilon over every pair that involves a selection point (its pairs and
        the training x selection pairs; in norms mode, its points), or None without them."""
        select = getattr(data, "select_points", None)
        if select is None:
            return None
        kwargs = dict(quantiles=False, mean_abs=False, memory_budget=self.memory_budget)
        if mode == "norms":
            return exact_report(embedding, select, "norms", **kwargs).epsilon
        score = exact_report(embedding, data.points, "pairs", other=select, **kwargs).epsilon
        if len(select) >= 2:
            try:
                score = max(score, exact_report(embedding, select, "pairs", **kwargs).epsilon)
            except ValueError:  # every selection pair at distance zero
                pass
        return score

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # the last step's matrix is evaluated once, here with the final report's detail (an
        # exact pass is the cost of many steps at large n), so the best checkpoint sees it
        last = trainer.max_steps is not None and trainer.global_step >= trainer.max_steps > 0
        if last:
            self.final_report = report = self._evaluate(trainer, pl_module, final=True)
            self.final_heldout = report.heldout
            self._final_step = trainer.global_step
        elif is_log_step(trainer.global_step, self.every_n_steps):
            report = self._evaluate(trainer, pl_module, final=False)
        else:
            return
        # for the progress bar and the best checkpoint (ModelCheckpoint's monitor): export/score
        # is what chooses the exported matrix (the selection points' epsilon where there are)
        pl_module.log_dict(
            {EPSILON: report.epsilon, "export/score": self._last_score},
            on_step=True,
            on_epoch=False,
            prog_bar=True,
            logger=False,
        )

    def on_train_end(self, trainer, pl_module) -> None:
        if self.final_report is not None and self._final_step == trainer.global_step:
            return
        step = int(trainer.global_step)
        if self.history and self.history[-1][0] == step:
            # stopped early at a certification: the same matrix again, now with the final
            # report's detail, and no second entry in the history or the logs
            self.final_report = self._report(trainer, pl_module, final=True)
        else:  # a run resumed from its last step's checkpoint: no batch ran in this fit
            self.final_report = self._evaluate(trainer, pl_module, final=True)
        self.final_heldout = self.final_report.heldout
        self._final_step = step

    def state_dict(self) -> dict:
        return {
            "best_embedding": self.best_embedding,
            "best_distortion": self.best_distortion,
            "best_step": self.best_step,
            "history": list(self.history),
            "heldout_history": list(self.heldout_history),
            "best_selection": self.best_selection,
            "selection_history": list(self.selection_history),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_embedding = state_dict.get("best_embedding")
        self.best_distortion = state_dict.get("best_distortion", float("inf"))
        self.best_step = state_dict.get("best_step")
        self.history = [tuple(entry) for entry in state_dict.get("history", [])]
        self.heldout_history = [tuple(entry) for entry in state_dict.get("heldout_history", [])]
        self.best_selection = state_dict.get("best_selection")
        self.selection_history = [tuple(entry) for entry in state_dict.get("selection_history", [])]

    def run_results(self) -> dict:
        return {
            "final_report": self.final_report,
            "best_embedding": self.best_embedding,
            "best_distortion": self.best_distortion,
            "best_step": self.best_step,
            "distortion_history": list(self.history),
            "heldout_history": list(self.heldout_history),
            "best_selection": self.best_selection,
            "selection_history": list(self.selection_history),
        }
