"""A callback for the kill-and-resume tests: send this process a signal before step ``step``.

Added to a real jl-train run (allowed by JL_EXTRA_TARGETS=kill_at.) with ``+callbacks.kill._target_=kill_at.KillAt
+callbacks.kill.step=N`` (the tests put this folder on PYTHONPATH); ``+callbacks.kill.signal=SIGTERM``
sends SIGTERM (or SIGINT) instead of the default SIGKILL. The signal comes at the start of a
step, after the previous step's checkpoint was written, as a kill at any time between two
steps would. ``step=-1`` signals at the start of the fit instead, before any step (while
the references are measured). A resumed run (``trainer.ckpt_path`` set) is left alone.
"""

import os
import signal as signals

from lightning.pytorch import Callback


class KillAt(Callback):
    def __init__(self, step: int, signal: str = "SIGKILL"):
        self.step = int(step)
        self.signum = getattr(signals, signal)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step and trainer.ckpt_path is None:
            os.kill(os.getpid(), self.signum)

    def on_fit_start(self, trainer, pl_module):
        if self.step < 0 and trainer.ckpt_path is None:
            os.kill(os.getpid(), self.signum)
