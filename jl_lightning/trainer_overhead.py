"""Two cuts in the Trainer's fixed cost per step, for full-batch steps of about a millisecond.

Measured with scripts/bench_step.py's setup (paper data, 2 cores, 2026-11-24): together
they take the Lightning/plain step ratio from 1.42-1.50x to 1.35x.

* ``NullProfiler``: Lightning wraps every hook call in ``profiler.profile(...)``; the
  default ``PassThroughProfiler`` builds a generator-based context manager each time,
  about 30 per step. This one returns a shared ``nullcontext``. jl-train's trainer configs
  use it; ``trainer.profiler=simple`` (or any Lightning profiler) brings profiling back.
* ``CheapHookBookkeeping``: before and after every hook Lightning sets the module's
  ``_current_fx_name``, about 30 times per step, and ``nn.Module.__setattr__`` runs its
  parameter/buffer/submodule checks each time. For that one plain string attribute the
  mixin stores it directly, which is what ``nn.Module.__setattr__`` ends up doing anyway.
"""

from __future__ import annotations

import contextlib

from lightning.pytorch.profilers import PassThroughProfiler

_HOOK_BOOKKEEPING = frozenset({"_current_fx_name"})


class NullProfiler(PassThroughProfiler):
    """A profiler that records nothing, at the cost of returning one shared object."""

    _null = contextlib.nullcontext()

    def profile(self, action_name: str):  # noqa: D102 - same contract as Profiler.profile
        return self._null


class CheapHookBookkeeping:
    """Mixin for a LightningModule (put it first in the bases)."""

    def __setattr__(self, name, value):
        if name in _HOOK_BOOKKEEPING and isinstance(value, (str, type(None))):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)
