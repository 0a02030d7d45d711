"""The trainer's default profiler (``conf/trainer/cpu.yaml``): one that records nothing.

Lightning wraps every hook call in ``profiler.profile(name)``; its default
``PassThroughProfiler`` builds a generator-based context manager for each of them, a few
dozen per training step, which on a short full-batch step is a visible share of the step.
This one hands back one shared ``nullcontext`` through the same public ``profile`` method
(Lightning's ``Trainer(profiler=...)`` argument). ``trainer.profiler=simple`` (or
``advanced``, ``pytorch``) profiles as usual; ``trainer.profiler=null`` is Lightning's default.
"""

from __future__ import annotations

import contextlib

from lightning.pytorch.profilers import PassThroughProfiler


class NullProfiler(PassThroughProfiler):
    """Records nothing, at the cost of returning one shared object."""

    _null = contextlib.nullcontext()

    def profile(self, action_name: str):
        return self._null
