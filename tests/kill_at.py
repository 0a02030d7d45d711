"""A callback for the kill-and-resume tests: SIGKILL this process before step ``step``.

Added to a real jl-train run with ``+callbacks.kill._target_=kill_at.KillAt
+callbacks.kill.step=N`` (the tests put this folder on PYTHONPATH). The kill comes at the
start of a step, after the previous step's checkpoint was written, as a kill at any time
between two steps would. A resumed run (``trainer.ckpt_path`` set) is left alone.
"""

import os
import signal

from lightning.pytorch import Callback


class KillAt(Callback):
    def __init__(self, step: int):
        self.step = int(step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step and trainer.ckpt_path is None:
            os.kill(os.getpid(), signal.SIGKILL)
