"""Exact passes shared by the processes of a distributed run (Lightning's DDP strategy).

Every exact figure a run computes during the fit (the active set's refresh, the tracker's
epsilon, the final certification and its held-out figures) goes through
:func:`exact_report`. With one process it is ``metrics.distortion.evaluate``. With P
processes each rank takes every P-th tile of the pass (``evaluate(..., shard=)``), the
ranks' reports are gathered, and :func:`~jl_lightning.metrics.distortion.merge_reports`
gives every rank the whole pass's epsilon, worst pairs and extremes; the median and p99
are then NaN (they would need every value in one place). An error on any rank is raised
on every rank, so none is left waiting in a collective.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from jl_lightning.core.sharding import Shard
from jl_lightning.metrics.distortion import evaluate, merge_reports


def process_shard() -> Shard:
    """This process's rank in the default process group (which Lightning's DDP strategy
    sets up), or the single process."""
    return Shard.of_process_group()


def share_rng_state() -> None:
    """Give every rank rank 0's torch RNG state (and its CUDA generator's, on a GPU), so that
    all ranks draw the same noise and random pairs from then on, as the single process
    would: the work done before training (references, checkpoints restored) may have drawn
    differently on different ranks."""

    if process_shard().single:
        return
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    states = [torch.get_rng_state(), torch.cuda.get_rng_state() if cuda else None]
    dist.broadcast_object_list(states, src=0)
    torch.set_rng_state(states[0])
    if cuda and states[1] is not None:
        torch.cuda.set_rng_state(states[1])


def exact_report(linear_map, points, mode: str, **kwargs):
    """``evaluate(linear_map, points, mode, **kwargs)`` over the whole pass, computed by all
    ranks together; every rank must call it at the same point of the run."""
    shard = process_shard()
    if shard.single:
        return evaluate(linear_map, points, mode, **kwargs)

    try:
        part, failure = evaluate(linear_map, points, mode, shard=shard, **kwargs), None
    except Exception as err:  # handed to every rank, raised there
        part, failure = None, err
    parts = [None] * shard.world
    dist.all_gather_object(parts, (part, failure))
    for _, error in parts:
        if error is not None:
            raise error
    return merge_reports([report for report, _ in parts])
