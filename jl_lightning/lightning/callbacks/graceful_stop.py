"""Stop a run cleanly on SIGTERM or SIGINT, the way schedulers stop jobs.

SLURM, Kubernetes and ``timeout`` send SIGTERM (then SIGKILL after a grace period); Ctrl-C
sends SIGINT. Lightning's own handler records SIGTERM (``trainer.received_sigterm``) and
stops at the end of the step, but reports nothing; SIGINT it leaves to Python, which raises
``KeyboardInterrupt`` wherever the process is, possibly half-way through an update.

With this callback both signals wait for the end of the current step. Then
``checkpoints/last.ckpt`` is written with that step's state, at the same hook and so with
the same content as a periodic checkpoint (``resume=`` continues from it bit for bit), and
:class:`RunStopped` is raised; the entry point turns it into one line on stderr and exit
status 128 + the signal number (143, 130), as shells report such a death.

Outside the training steps (loading the data, the references, the final phase) there is
no step to save, so the signal stops the run at once; a second signal during a step does
too. Lightning registers its SIGTERM handler after this one's (in ``setup``) and calls
both, so its launchers and SLURM requeueing still see the signal. Before and after the
fit, :func:`stop_on_signals` (the entry point's) makes the same signals raise at once.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from pathlib import Path

from lightning.pytorch import Callback

log = logging.getLogger("jl_lightning")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RunStopped(BaseException):
    """A run stopped by ``signum`` at ``step``; ``checkpoint`` holds that step (None: nothing
    was saved now). A BaseException, like KeyboardInterrupt, so no ``except Exception``
    on the way up mistakes it for an error in the run."""

    def __init__(self, signum: int, step: int, checkpoint: Path | None, max_steps: int | None = None):
        self.signum, self.step, self.checkpoint, self.max_steps = int(signum), int(step), checkpoint, max_steps
        super().__init__(f"stopped by {signal.Signals(signum).name} at step {step}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def checkpoint_path(run_dir) -> Path:
    """Where ``resume=`` looks for the state to continue from."""
    return Path(run_dir) / "checkpoints" / "last.ckpt"


def _raise_stopped(signum, frame) -> None:
    raise RunStopped(signum, -1, None)


@contextmanager
def stop_on_signals():
    """Within the block, SIGTERM and SIGINT raise :class:`RunStopped` (the whole of a
    ``jl-train`` run: data, fit, results); :class:`GracefulStop` defers them during steps."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    for signum in SIGNALS:
        signal.signal(signum, _raise_stopped)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


class GracefulStop(Callback):
    """On SIGTERM or SIGINT: finish the step, save it to ``checkpoints/last.ckpt``, raise
    :class:`RunStopped`. Put it after the callbacks whose per-step state the checkpoint
    must hold (the default callbacks list ends with it)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._in_steps = False
        self._previous: dict[int, object] = {}

    # ------------------------------------------------------------ the handler
    def _handle(self, signum, frame) -> None:
        if self._in_steps and self.signum is None:
            self.signum = signum
            log.warning("received %s: stopping after this step and saving a checkpoint", signal.Signals(signum).name)
            return
        self.signum = signum
        raise RunStopped(signum, -1, None)

    def _install(self) -> None:
        if threading.current_thread() is not threading.main_thread() or self._previous:
            return
        for signum in SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def _restore(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    # ------------------------------------------------------------------ hooks
    def setup(self, trainer, pl_module, stage: str) -> None:
        # before Lightning registers its SIGTERM handler, which then calls this one too
        self.signum = None
        self._install()

    def on_train_start(self, trainer, pl_module) -> None:
        self._in_steps = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        signum = self.signum
        if signum is None and trainer.received_sigterm:  # a SIGTERM that reached Lightning only
            signum = signal.SIGTERM
        if signum is None:
            return
        self._in_steps = False
        path = checkpoint_path(trainer.default_root_dir)
        # Lightning writes it through a file-system transaction: never half a file over the periodic one
        trainer.save_checkpoint(path, weights_only=False)
        raise RunStopped(signum, trainer.global_step, path, trainer.max_steps)

    def on_train_end(self, trainer, pl_module) -> None:
        self._in_steps = False

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._in_steps = False
        self._restore()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._in_steps = False
        self._restore()
