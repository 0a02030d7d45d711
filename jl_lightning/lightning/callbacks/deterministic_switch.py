"""Switch the sampler to its deterministic mean once sigma^2 is small enough."""

from __future__ import annotations

import logging

from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from jl_lightning.constraints import NON_NEGATIVE, check
from jl_lightning.lightning.contract import SWITCH_MARKER as MARKER
from jl_lightning.lightning.log_schedule import log_at

log = logging.getLogger("jl_lightning")


class DeterministicSwitch(Callback):
    """Once sigma^2 <= ``threshold``, set sigma^2 to exactly 0 and freeze it.

    Training then continues on M alone; every sample equals M / sqrt(k) and the loss is
    the deterministic max distortion. ``switch_step`` is the optimizer step after which
    the switch happened (None if it never did). ``threshold: 0`` switches only when a raw
    sigma^2 reaches exactly 0. Uses the module contract: ``deterministic``, ``sigma2()``,
    ``freeze_variance()``.

    The switch is marked in the logs: ``2_variance/deterministic`` is 0 while sampling and 1
    from the switch on (logged at the start, on both sides of the switch and at the end, so
    it draws a step), and TensorBoard gets a text entry ``run/switch`` at that step.
    """

    def __init__(self, threshold: float = 1e-4):
        super().__init__()
        self.threshold = float(check("callbacks.deterministic_switch.threshold", threshold, NON_NEGATIVE))
        self.switch_step: int | None = None

    def _maybe_switch(self, trainer, pl_module) -> None:
        if pl_module.deterministic:
            return
        if pl_module.sigma2() <= self.threshold:
            pl_module.freeze_variance()
            self.switch_step = int(trainer.global_step)
            message = (
                f"sigma^2 <= {self.threshold:g} at step {self.switch_step}: switched to the deterministic "
                "mean (sigma^2 = 0, frozen)"
            )
            log.info(message)
            if self.switch_step > 0:
                log_at(trainer, {MARKER: 0.0}, self.switch_step - 1)
            log_at(trainer, {MARKER: 1.0}, self.switch_step)
            for logger in trainer.loggers:
                if isinstance(logger, TensorBoardLogger):
                    logger.experiment.add_text("run/switch", message, global_step=self.switch_step)

    def on_train_start(self, trainer, pl_module) -> None:
        if not pl_module.deterministic:
            log_at(trainer, {MARKER: 0.0}, trainer.global_step)
        self._maybe_switch(trainer, pl_module)  # e.g. direct optimization: init_variance=0

    def on_train_end(self, trainer, pl_module) -> None:
        log_at(trainer, {MARKER: float(pl_module.deterministic)}, trainer.global_step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._maybe_switch(trainer, pl_module)

    def run_results(self) -> dict:
        return {"switch_step": self.switch_step}

    def state_dict(self) -> dict:
        return {"switch_step": self.switch_step}

    def load_state_dict(self, state_dict: dict) -> None:
        self.switch_step = state_dict.get("switch_step")
