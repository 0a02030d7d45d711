"""When and under which step to log: shared by the module and the callbacks.

Every scalar goes straight to the loggers (Lightning's ``Logger.log_metrics``) under an
explicit step: **the number of optimizer updates behind the matrix it describes**. The loss
of a training step describes M before that step's update, so it is logged under the
step count before it; sigma^2 and the exact distortion after an update are logged under the
count after it. At one step every tag then describes the same M, and no ``epoch`` tag
is added (Lightning adds one only to values it hands over itself). Values that
Lightning's progress bar or checkpointing read are also given to ``self.log`` with
``logger=False``.
"""

from __future__ import annotations

import math


def is_log_step(steps_done: int, every: int) -> bool:
    """True when ``steps_done`` optimizer steps (this batch's included) is a multiple of ``every``."""
    return steps_done > 0 and steps_done % every == 0


def is_dense_step(steps_done: int, every: int) -> bool:
    """A log-spaced schedule for quantities that change fast early (sigma^2 while it decays):
    every step up to 100, every 10th up to 1000, every 100th after, and every ``every``
    steps. About 100 points per decade of steps, so a curve on a log axis has no gaps."""
    if steps_done <= 0:
        return steps_done == 0
    spacing = 10 ** max(0, int(math.log10(steps_done)) - 1) if steps_done > 100 else 1
    return steps_done % spacing == 0 or steps_done % every == 0


def log_at(trainer, metrics: dict, step: int) -> None:
    """Hand ``metrics`` (name -> float) to every logger of ``trainer`` under ``step``."""
    if not metrics:
        return
    values = {name: float(value) for name, value in metrics.items()}
    for logger in trainer.loggers:
        logger.log_metrics(values, step=int(step))
