"""Stop a run whose certified epsilon has stopped improving: Lightning's EarlyStopping, counted
from the switch to the deterministic mean."""

from __future__ import annotations

from lightning.pytorch.callbacks import EarlyStopping


class DeterministicEarlyStopping(EarlyStopping):
    """Lightning's :class:`~lightning.pytorch.callbacks.EarlyStopping`, checking only once the
    run trains the deterministic mean (sigma^2 = 0, after ``DeterministicSwitch``).

    Before the switch M is the mean of a sampler that is still spreading: its certified epsilon
    can stall for many certifications while sigma^2 shrinks, and a run stopped there has not
    converged. From the switch on, every argument means what it means to Lightning; the
    checks happen at the end of each training epoch, one certification period of the
    distortion tracker (``trainer.limit_train_batches``, conf/trainer/cpu.yaml).

    Parameters
    ----------
    monitor : str
        The logged figure to watch (conf: ``export/score``, the figure that chooses the
        exported matrix).
    patience : int
        Checks in a row without a gain of ``min_delta`` before the run stops.
    min_delta : float
        The smallest decrease that counts as a gain.
    **kwargs
        Any other argument of Lightning's EarlyStopping.

    Examples
    --------
    >>> stopper = DeterministicEarlyStopping(monitor="export/score", patience=20, min_delta=1e-3)
    >>> stopper.patience, abs(stopper.min_delta)
    (20, 0.001)
    """

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if pl_module.deterministic:
            super().on_train_epoch_end(trainer, pl_module)
