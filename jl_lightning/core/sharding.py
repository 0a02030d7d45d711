"""One process's share of a loss over all points or pairs, when several processes train one model.

With P processes (ranks), every rank holds all the points and the same M and sigma^2, and
draws the same noise (the same RNG stream, consumed identically). Each rank evaluates
only its share of the set S (points, or the active pairs: the items r, r + P, r + 2P, ...
of the list the single process would use), and the max over S is formed from all ranks'
partial results with a differentiable collective:

* hard max: max_r (max over rank r's share), from an all-gather of the N per-sample maxima;
* smooth max: t log sum_r exp(LSE_r / t) with LSE_r = t log sum over rank r's share of
  exp(dev / t), i.e. exactly t log sum over all of S of exp(dev / t).

``torch.distributed.nn.functional.all_gather`` sums the gradients of the gathered copies
back onto their owner. Every rank computes the same loss, so rank r's own values receive P
times their gradient; DistributedDataParallel then averages the ranks' gradients, which
divides by P again: the update is the single-process gradient, reaching exactly the
points or pairs the single process would differentiate. Terms every rank computes alike
(lambda sigma^2 / 2) are averaged to themselves.

With one process (:data:`SINGLE`) every method is the identity, and the loss is computed
exactly as without sharding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Shard:
    """Rank ``rank`` of ``world`` processes."""

    rank: int = 0
    world: int = 1

    def __post_init__(self):
        if not (0 <= self.rank < self.world):
            raise ValueError(f"rank must be in [0, {self.world}), got {self.rank}")

    @property
    def single(self) -> bool:
        return self.world == 1

    @classmethod
    def of_process_group(cls) -> "Shard":
        """This process's rank in the default torch.distributed group (one process if none)."""

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return cls(dist.get_rank(), dist.get_world_size())
        return SINGLE

    def take(self, *items):
        """This rank's share of each of ``items`` (equal-length tensors or arrays along dim 0):
        the rows rank, rank + world, ... (one tensor if one was given)."""
        if self.single:
            return items[0] if len(items) == 1 else items
        shares = tuple(item[self.rank :: self.world] for item in items)
        return shares[0] if len(shares) == 1 else shares

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """Every rank's ``values`` stacked along a new first axis (differentiable)."""
        if self.single:
            return values.unsqueeze(0)
        # lazy: only a distributed run needs the differentiable collectives
        from torch.distributed.nn.functional import all_gather  # noqa: PLC0415

        return torch.stack(all_gather(values.contiguous()))

    def max(self, values: torch.Tensor) -> torch.Tensor:
        """The elementwise max over ranks of ``values`` (the gradient reaches one rank's value)."""
        if self.single:
            return values
        return self.gather(values).max(0).values

    def logsumexp(self, values: torch.Tensor) -> torch.Tensor:
        """log sum over ranks of exp(``values``), elementwise."""
        if self.single:
            return values
        return torch.logsumexp(self.gather(values), 0)


SINGLE = Shard()
