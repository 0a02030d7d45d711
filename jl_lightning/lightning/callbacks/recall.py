"""recall@K of the exported matrix beside each reference's best map, once the run is finished."""

from __future__ import annotations

import itertools

import torch
from lightning.pytorch import Callback

from jl_lightning.baselines.references import dense_map
from jl_lightning.constraints import NON_NEGATIVE_INT, check_params
from jl_lightning.lightning.contract import RunRecord
from jl_lightning.metrics.heartbeat import Heartbeat
from jl_lightning.metrics.neighbors import original_neighbors, recall_at_k, tile_rows


class RecallAtK(Callback):
    """recall@K of the exact K nearest neighbours after embedding (``metrics/neighbors.py``),
    for the exported matrix and each reference's best map, over ``queries`` seeded query points
    against all training points, computed on the device the steps ran on.

    It reads the finished run (``contract.ReadsRunRecord``) and puts its figures into the
    record's summary as ``recall`` (summary.json, the sweep table), so it stands before the
    callbacks that draw or log the record; ``run_results()`` gives the same figures.
    ``queries: 0``, or too few points, gives None."""

    def __init__(self, k: int = 10, queries: int = 1000, seed: int = 0):
        super().__init__()
        check_params(locals(), {"k": NON_NEGATIVE_INT, "queries": NON_NEGATIVE_INT}, "callbacks.recall.")
        self.k, self.queries, self.seed = k, queries, int(seed)
        self.figures: dict | None = None
        self._device: torch.device | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        # where the steps run: by the end of the fit Lightning's teardown has moved the module to the CPU
        self._device = pl_module.embedding.device

    def measure(self, embedding, points, reference_maps: dict, device=None) -> dict | None:
        """The figures for ``embedding`` and ``reference_maps`` on ``points``, or None."""
        if not (self.k and self.queries) or len(points) <= self.k:
            return None
        K, queries, seed = self.k, self.queries, self.seed
        # at 10^5 points each map takes seconds: a progress line, tile by tile, if the log has
        # been quiet long
        tiles = -(-len(points) // tile_rows(points))
        beat = Heartbeat(f"recall@{K} of {min(queries, len(points))} queries", (2 + len(reference_maps)) * tiles)
        done = itertools.count(1)

        def tick():
            beat.tick(next(done))

        truth = original_neighbors(points, K, queries, seed, device=device, tick=tick)
        out = {
            "k": K,
            "queries": min(queries, len(points)),
            "seed": seed,
            "learned": recall_at_k(embedding, points, K, queries, seed, truth, device=device, tick=tick),
        }
        for name, linear_map in reference_maps.items():
            out[name] = recall_at_k(
                dense_map(linear_map, points.shape[1]), points, K, queries, seed, truth, device=device, tick=tick
            )
        return out

    def on_run_record(self, trainer, pl_module, record: RunRecord) -> None:
        self.figures = self.measure(
            record.embedding,
            trainer.datamodule.points,
            record.results.get("reference_maps") or {},
            device=self._device or pl_module.embedding.device,
        )
        record.summary["recall"] = self.figures

    def run_results(self) -> dict:
        return {"recall": self.figures}
