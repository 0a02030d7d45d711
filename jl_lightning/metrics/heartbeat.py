"""A line in the log at least every 30 s during a long phase, with the fraction done and the
time left, so that a run without a terminal (train.log, a cluster job) is never silent.

The tqdm bars of the exact passes show only on a terminal; this writes to the
``jl_lightning`` logger, which ``jl-train`` sends to train.log and the console.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("jl_lightning")
# a line at most this long after the last line of the run's log, so that no phase (and no
# hand-over between phases) is silent for 30 s
EVERY_S = 25.0


class _LastLine(logging.Filter):
    """Stamps the time of every record of the ``jl_lightning`` logger (and of lines printed
    instead, :func:`stamp`): a heartbeat or a progress line then speaks when the *log* has
    been quiet, not only its own phase."""

    at = time.perf_counter()

    def filter(self, record: logging.LogRecord) -> bool:
        stamp()
        return True


def stamp() -> None:
    """A line was just written (a record, or a line printed where there is no log)."""
    _LastLine.at = time.perf_counter()


def last_line_time() -> float:
    """``time.perf_counter()`` of the latest line of the run's log."""
    return _LastLine.at


log.addFilter(_LastLine())


class Heartbeat:
    """``tick(done)`` logs ``<what>: 40 % (400 of 1000 tiles), 31 s, about 46 s left`` when
    the run's log has been quiet for ``every_s`` seconds (its last line, from this phase or
    any other). ``clock`` is injectable for tests: then the phase's own start and lines count,
    and a phase shorter than ``every_s`` says nothing."""

    def __init__(
        self,
        what: str,
        total: int,
        unit: str = "tiles",
        every_s: float = EVERY_S,
        clock=time.perf_counter,
        logger: logging.Logger = log,
    ):
        self.what, self.total, self.unit, self.every_s = what, max(int(total), 1), unit, float(every_s)
        self.clock, self.logger = clock, logger
        self.began = self.last = clock()
        self.lines: list[str] = []

    def tick(self, done: int) -> None:
        now = self.clock()
        # with the real clock, silence is the log's: since its last line, whichever phase wrote
        # it (this one's own lines included), not since this phase began
        quiet_since = last_line_time() if self.clock is time.perf_counter else self.last
        if now - quiet_since < self.every_s or done <= 0:
            return
        self.last = now
        elapsed = now - self.began
        left = elapsed / done * (self.total - done) if done > 0 else float("nan")
        line = (
            f"{self.what}: {100 * done / self.total:.0f} % ({done} of {self.total} {self.unit}), "
            f"{elapsed:.0f} s, about {left:.0f} s left"
        )
        self.lines.append(line)
        self.logger.info("%s", line)
