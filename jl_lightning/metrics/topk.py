"""The one streaming top-K of the exact passes: the K worst points or pairs of a pass (its
``worst``), the float64 extremes of a screened pass and an active set's candidates."""

from __future__ import annotations

import math

import numpy as np
import torch

# a streaming top-K merges exactly up to this K, and above it by a sampled threshold
EXACT_TOPK = 2**16
MERGE_SAMPLE = 2**16


class TopK:
    """A streaming top-K of (value, i, j). Once K values are kept, new ones wait in a
    buffer and are merged when the buffer holds K of them, so a large K costs one merge per
    K values rather than one per tile. A threshold read off the kept values (their minimum)
    is then below the true K-th value while values wait, which only lets more pairs through.

    Up to ``EXACT_TOPK`` values the merge is an exact top-K. Above it (an active set's
    candidates, millions of pairs) a top-K on a CPU costs a sort, so the merge keeps the
    values at or above a threshold read off a strided sample of ``MERGE_SAMPLE`` of them,
    set a little low so that between K and 2K stay (otherwise it falls back to the exact
    top-K): every value of the exact top-K is among them, and :meth:`sorted` hands back the
    K largest of what is kept."""

    def __init__(self, keep: int, device, dtype=torch.float64, extra: int = 0):
        self.keep = keep
        # values, i, j and ``extra`` more columns of the values' dtype
        self.columns = [
            torch.empty(0, dtype=dtype, device=device),
            torch.empty(0, dtype=torch.long, device=device),
            torch.empty(0, dtype=torch.long, device=device),
            *(torch.empty(0, dtype=dtype, device=device) for _ in range(extra)),
        ]
        self.pending: list[tuple[torch.Tensor, ...]] = []
        self.waiting = 0
        self.full = False  # K values have been seen: the kept minimum is a threshold
        self.floor = -math.inf  # the kept minimum once full, read at each merge

    @property
    def values(self) -> torch.Tensor:
        return self.columns[0]

    def push(self, *columns: torch.Tensor) -> None:
        self.pending.append(columns)
        self.waiting += len(columns[0])
        if not self.full or self.waiting >= self.keep:
            self.merge()

    def merge(self) -> None:
        """Fold the waiting values into the K kept."""
        if not self.pending:
            return
        columns = [torch.cat([kept, *parts]) for kept, parts in zip(self.columns, zip(*self.pending))]
        self.pending, self.waiting = [], 0
        values = columns[0]
        if len(values) >= self.keep:
            self.full = True
        if len(values) > self.keep:
            if self.keep <= EXACT_TOPK:
                top = torch.topk(values, self.keep).indices
            else:
                sample = values[:: max(1, len(values) // MERGE_SAMPLE)]
                # 5 % and 16 sampled values of margin, so that about K or more stay
                rank = min(len(sample), int(len(sample) * self.keep / len(values) * 1.05) + 16)
                tau = torch.topk(sample, rank).values[-1]
                top = (values >= tau).nonzero(as_tuple=True)[0]
                if len(top) > 2 * self.keep or len(top) < self.keep:  # ties, or an unlucky sample
                    top = torch.topk(values, self.keep).indices
            columns = [c[top] for c in columns]
        self.columns = columns
        if self.full:
            self.floor = float(columns[0].min())

    def sorted(self) -> tuple[np.ndarray, ...]:
        """(i, j, values, extra columns...) of the K largest, worst first, on the CPU."""
        self.merge()
        order = torch.argsort(self.values, descending=True)[: self.keep]
        values, i, j, *extra = (c[order].cpu().numpy() for c in self.columns)
        return (i, j, values, *extra)
