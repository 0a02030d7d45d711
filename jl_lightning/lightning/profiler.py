"""A profiler that records nothing, for ``trainer=lean``.

Lightning wraps every hook call in ``profiler.profile(name)``; its default
``PassThroughProfiler`` builds a generator-based context manager for each of them, a few
dozen per training step. This one hands back one shared ``nullcontext`` through the same
public ``profile`` method. It is opt-in (``trainer=lean``); the default trainer keeps
Lightning's own profiler, and ``trainer.profiler=simple`` profiles as usual.
"""

from __future__ import annotations

import contextlib

from lightning.pytorch.profilers import PassThroughProfiler


class NullProfiler(PassThroughProfiler):
    """Records nothing, at the cost of returning one shared object."""

    _null = contextlib.nullcontext()

    def profile(self, action_name: str):
        return self._null
