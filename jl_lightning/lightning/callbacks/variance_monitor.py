"""Log sigma^2 densely while it decays, and record when it crosses given thresholds."""

from __future__ import annotations

import math

from lightning.pytorch import Callback

from jl_lightning.lightning.contract import LOG10_SIGMA2, SIGMA2, SIGMA2_DECAY
from jl_lightning.lightning.log_schedule import is_dense_step, is_log_step, log_at


class VarianceMonitor(Callback):
    """Watches sigma^2 (``pl_module.sigma2()``) after every optimizer step.

    * while sigma^2 > 0, logs ``2_variance/sigma2`` and ``2_variance/log10_sigma2`` at every step,
      so the crossings of 0.01 and 0.001 and the collapse to 0 are drawn where they happen;
      the step at which it becomes exactly 0 is logged once more (0, and no log10), then
      sigma^2 is logged every ``every_n_steps`` steps;
    * logs ``2_variance/decay``, sigma^2 now over sigma^2 ``every_n_steps`` steps ago;
    * keeps ``history``: (step, sigma^2) on a dense log-spaced schedule
      (``log_schedule.is_dense_step``: every step up to 100, then about 100 points per
      decade) and at the switch, for the run's figures (summary.json's ``sigma2_history``);
    * records the first step at which sigma^2 <= each of ``thresholds``
      (``crossings``, in summary.json as ``sigma2_crossings``).

    Reading sigma^2 every step costs one scalar comparison; logging is gated.
    """

    def __init__(self, thresholds=(1e-1, 1e-2, 1e-3), every_n_steps: int = 50):
        super().__init__()
        self.thresholds = sorted((float(t) for t in thresholds), reverse=True)
        self.every_n_steps = int(every_n_steps)
        self.crossings: dict[str, int | None] = {f"{t:g}": None for t in self.thresholds}
        self.history: list[tuple[int, float]] = []
        self._pending = list(self.thresholds)
        self._previous: float | None = None
        self._last_logged: float | None = None

    def _log(self, trainer, step: int, s2: float, record: bool = True) -> None:
        metrics = {SIGMA2: s2}
        if s2 > 0:
            metrics[LOG10_SIGMA2] = math.log10(s2)
        log_at(trainer, metrics, step)
        if record:  # the history (summary.json, the figures) keeps the dense schedule
            self.history.append((step, s2))
        self._last_logged = s2

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.global_step == 0:  # the starting value (a resumed run has it already)
            self._log(trainer, 0, pl_module.sigma2())

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step  # optimizer steps taken, this one included
        gate = is_log_step(step, self.every_n_steps)
        decaying = self._last_logged is None or self._last_logged > 0
        if not (self._pending or gate or decaying):
            return
        s2 = pl_module.sigma2()
        while self._pending and s2 <= self._pending[0]:
            self.crossings[f"{self._pending.pop(0):g}"] = step
        if decaying:  # every step until the switch: TensorBoard draws the collapse where it happens
            self._log(trainer, step, s2, record=gate or s2 == 0 or is_dense_step(step, self.every_n_steps))
        elif gate:
            self._log(trainer, step, s2)
        if gate:
            if self._previous is not None and self._previous > 0:
                log_at(trainer, {SIGMA2_DECAY: s2 / self._previous}, step)
            self._previous = s2

    def run_results(self) -> dict:
        return {"sigma2_crossings": dict(self.crossings), "sigma2_history": list(self.history)}

    def state_dict(self) -> dict:
        return {
            "crossings": dict(self.crossings),
            "previous": self._previous,
            "history": list(self.history),
            "last_logged": self._last_logged,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        self.crossings.update(state_dict.get("crossings", {}))
        self._previous = state_dict.get("previous")
        self._last_logged = state_dict.get("last_logged")
        self.history = [tuple(entry) for entry in state_dict.get("history", [])]
        self._pending = [t for t in self.thresholds if self.crossings.get(f"{t:g}") is None]
