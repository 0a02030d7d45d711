"""Progress: a bar for terminals, a periodic log line for everything else."""

from __future__ import annotations

import logging
import math
import sys
import time

from lightning.pytorch import Callback
from lightning.pytorch.callbacks import TQDMProgressBar
from tqdm import tqdm

from jl_lightning.constraints import Number, check
from jl_lightning.lightning.contract import EPSILON, PASS_EPSILON
from jl_lightning.metrics.heartbeat import EVERY_S as QUIET_S
from jl_lightning.metrics.heartbeat import last_line_time, stamp

log = logging.getLogger("jl_lightning")


def phase(pl_module) -> str:
    """``sampler`` while sigma^2 > 0 is trained, ``deterministic`` after the switch."""
    return "deterministic" if pl_module.deterministic else "sampler"


def latest_epsilon(trainer) -> float | None:
    value = trainer.callback_metrics.get(EPSILON)
    return None if value is None else float(value)


def latest_pass_epsilon(trainer) -> float | None:
    """The last exact pass's certified epsilon (``contract.PASS_EPSILON``, handed to
    ``callback_metrics`` by the sampler), for runs whose tracker certifies only at the end."""
    value = trainer.callback_metrics.get(PASS_EPSILON)
    return None if value is None else float(value)


class _AboveTheBar:
    """A stream for a logging handler while a tqdm bar is on screen: each write goes through
    ``tqdm.write``, which clears the bar, prints the line and draws the bar again below it,
    instead of printing into the bar's line and leaving a stale bar behind."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:

        if text:
            tqdm.write(text, file=self.stream, end="")

    def flush(self) -> None:
        self.stream.flush()


def console_handlers() -> list[logging.StreamHandler]:
    """The root logger's handlers that write to a terminal stream (not to a file)."""
    return [
        h
        for h in logging.getLogger().handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]


class JLProgressBar(TQDMProgressBar):
    """Lightning's tqdm bar over the run's steps (``step/total``), described by the phase
    (sampler / deterministic) instead of ``Epoch 0``, showing the latest exact epsilon and
    sigma^2. Only on interactive runs (``fit_from_config`` drops it otherwise).
    ``refresh_rate``: steps between redraws (conf: ``log_every``)."""

    def __init__(self, refresh_rate: int = 50, process_position: int = 0, leave: bool = False):
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
        self._streams: list[tuple[logging.StreamHandler, object]] = []

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        for handler in console_handlers():  # the log's lines (the switch, warnings) go above the bar
            if not isinstance(handler.stream, _AboveTheBar):
                self._streams.append((handler, handler.setStream(_AboveTheBar(handler.stream))))

    def _restore_streams(self) -> None:
        for handler, stream in self._streams:
            handler.setStream(stream)
        self._streams = []

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        self._restore_streams()

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._restore_streams()

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        # Lightning's own would draw "Epoch N" and count each epoch's batches; an epoch here is
        # one certification period, and the bar counts the run's steps across them
        bar = self.train_progress_bar
        bar.set_description(phase(pl_module), refresh=False)
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else self.total_train_batches
        if bar.total != total:
            bar.reset(total=total)
            bar.initial = 0
            bar.n = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        bar, step = self.train_progress_bar, trainer.global_step
        if self.is_enabled and (step % self.refresh_rate == 0 or step == bar.total):
            bar.n = step
            bar.set_postfix(self.get_metrics(trainer, pl_module))  # redraws the bar
        if bar.desc.rstrip(": ") != phase(pl_module):
            bar.set_description(phase(pl_module))

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = {}
        eps = latest_epsilon(trainer)
        if eps is not None:
            metrics["epsilon"] = f"{eps:.4g}"
        metrics["sigma^2"] = f"{pl_module.sigma2():.3g}"
        return metrics


class ProgressLog(Callback):
    """One log line every ``every_fraction`` of the run's steps, and the last once its matrix is
    certified (``on_run_record``: the final epsilon, not the previous evaluation's), so that a
    long fit without a terminal (a log file, a cluster job, ``JLEmbedding.fit``) is never
    silent: ``step 500/5000 (10 %) | sampler | epsilon 0.41 | sigma^2 0.02 | 12 s, about 108 s
    left``. ``fit_from_config`` keeps it where there is no bar, drops it where there is one."""

    def __init__(self, every_fraction: float = 0.1):
        super().__init__()
        self.every_fraction = float(
            check("callbacks.progress_log.every_fraction", every_fraction, Number(low=0, high=1, low_open=True))
        )
        self.lines: list[str] = []
        self._started = time.perf_counter()
        self._first_step = 0

    def on_train_start(self, trainer, pl_module) -> None:
        self._started, self._first_step = time.perf_counter(), trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        total, step = trainer.max_steps, trainer.global_step
        if not total or total <= 0 or not trainer.is_global_zero:
            return
        every = max(1, math.ceil(total * self.every_fraction))
        if step == total:  # the last line waits for the last step's certified epsilon
            return
        # every tenth of the run, and whenever the log has been quiet for QUIET_S (slow steps,
        # or steps after a long exact pass): a run is never silent for 30 s
        if step % every and time.perf_counter() - max(last_line_time(), self._started) < QUIET_S:
            return
        eps, label = latest_epsilon(trainer), "epsilon"
        pass_eps = latest_pass_epsilon(trainer) if eps is None else None
        if pass_eps is not None:
            eps, label = pass_eps, "last exact pass: epsilon"
        self._emit(step, total, phase(pl_module), eps, pl_module.sigma2(), label)

    def on_run_record(self, trainer, pl_module, record) -> None:
        """The 100 % line, once the last step's matrix is certified (``contract.ReadsRunRecord``):
        it shows the final epsilon and sigma^2 of summary.json, not the previous evaluation's."""
        total = trainer.max_steps
        if not total or total <= 0 or not trainer.is_global_zero:
            return
        summary = record.summary
        stop = summary.get("early_stop")
        self._emit(
            int(summary.get("steps", trainer.global_step)),
            total,
            phase(pl_module),
            summary.get("final_distortion"),
            summary.get("sigma2_final", pl_module.sigma2()),
            end=None
            if stop is None
            else f"stopped early: the best epsilon fell by less than {stop['min_delta']:g} "
            f"in {stop['patience']} certifications (callbacks.early_stopping)",
        )

    def _emit(
        self, step: int, total: int, phase_name: str, eps, sigma2: float, label: str = "epsilon", end=None
    ) -> None:
        """One progress line; ``end``: why the run ended before ``total`` steps (no time left then)."""
        elapsed = time.perf_counter() - self._started
        done = step - self._first_step
        left = elapsed / done * (total - step) if done > 0 else math.nan
        parts = [
            f"step {step}/{total} ({100 * step / total:.0f} %)",
            phase_name,
            f"{label} -" if eps is None else f"{label} {eps:.4g}",
            f"sigma^2 {sigma2:.3g}",
            f"{elapsed:.0f} s" + ("" if step == total or end else f", about {left:.0f} s left"),
        ]
        if end:
            parts.append(end)
        line = " | ".join(parts)
        self.lines.append(line)
        if log.isEnabledFor(logging.INFO) and log.hasHandlers():
            log.info(line)  # jl-train: the run's log (train.log and the console)
        else:  # plain Python (JLEmbedding.fit) configures no logging: INFO would be dropped
            print(f"[jl] {line}", file=sys.stderr, flush=True)
            stamp()
