"""Log sigma^2 and its decay, and record when it crosses given thresholds."""

from __future__ import annotations

from lightning.pytorch import Callback

from jl_lightning.lightning.log_schedule import is_log_step


class VarianceMonitor(Callback):
    """Watches sigma^2 (``pl_module.sigma2()``) after every optimizer step.

    * logs ``variance/sigma2`` and ``variance/decay`` (sigma^2 now over sigma^2
      ``every_n_steps`` steps ago) every ``every_n_steps`` steps;
    * records the first step at which sigma^2 <= each of ``thresholds``
      (``crossings``, in summary.json as ``sigma2_crossings``).

    Reading sigma^2 every step costs one scalar comparison; logging is gated.
    """

    def __init__(self, thresholds=(1e-1, 1e-2, 1e-3), every_n_steps: int = 50):
        super().__init__()
        self.thresholds = sorted((float(t) for t in thresholds), reverse=True)
        self.every_n_steps = int(every_n_steps)
        self.crossings: dict[str, int | None] = {f"{t:g}": None for t in self.thresholds}
        self._pending = list(self.thresholds)
        self._previous: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step  # optimizer steps taken, this one included
        gate = is_log_step(step, self.every_n_steps)
        if not (self._pending or gate):
            return
        s2 = pl_module.sigma2()
        while self._pending and s2 <= self._pending[0]:
            self.crossings[f"{self._pending.pop(0):g}"] = step
        if gate:
            metrics = {"variance/sigma2": s2}
            if self._previous is not None and self._previous > 0:
                metrics["variance/decay"] = s2 / self._previous
            self._previous = s2
            pl_module.log_dict(metrics, on_step=True, on_epoch=False)

    def run_results(self) -> dict:
        return {"sigma2_crossings": dict(self.crossings)}

    def state_dict(self) -> dict:
        return {"crossings": dict(self.crossings), "previous": self._previous}

    def load_state_dict(self, state_dict: dict) -> None:
        self.crossings.update(state_dict.get("crossings", {}))
        self._previous = state_dict.get("previous")
        self._pending = [t for t in self.thresholds if self.crossings.get(f"{t:g}") is None]
