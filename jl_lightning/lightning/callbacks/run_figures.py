"""The run's figures: distortion ratios against the references, and epsilon / sigma^2 over steps."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from lightning.pytorch import Callback
from lightning.pytorch.loggers import TensorBoardLogger

from jl_lightning.baselines.references import dense_map
from jl_lightning.io.figures import (
    ratio_histogram,
    render,
    training_curves,
    write_bytes,
)
from jl_lightning.lightning.contract import RunRecord
from jl_lightning.metrics.distortion import ratio_sample

log = logging.getLogger("jl_lightning")
FILES = {"ratios": "ratios.png", "curves": "curves.png"}


class RunFigures(Callback):
    """At the end of the fit (``contract.ReadsRunRecord``), draw

    * ``ratios``: a histogram of ||A v||^2 / ||v||^2 of the exported matrix, the best
      Gaussian draw and PCA with its best scale, over a seeded sample of ``sample`` points
      or pairs (``metrics.distortion.ratio_sample``), with dashed lines at each map's exact
      1 +- epsilon (the summary's figures, never the sample's);
    * ``curves``: the exact epsilon against steps (training and held-out) with the references
      as horizontal lines, and sigma^2 on a log axis, the switch to the mean a vertical line;

    and write each as ``figures/<name>.png`` under ``dirpath`` and, with a TensorBoard logger,
    as the image ``figures/<name>`` (Images tab). Each figure is drawn once: TensorBoard gets
    the pixels the PNG was encoded from (``add_figure`` would draw it again). ``dirpath:
    null`` writes no PNG. ``seconds`` and ``costs`` (per figure): what they cost (in the log).
    """

    def __init__(self, dirpath: str | None, sample: int = 20000, seed: int = 0, dpi: int = 100):
        super().__init__()
        self.dirpath = None if dirpath is None else Path(dirpath)
        self.sample, self.seed, self.dpi = int(sample), int(seed), int(dpi)
        self.written: list[Path] = []
        self.costs: dict[str, float] = {}
        self.seconds = 0.0

    def figures(self, trainer, pl_module, record: RunRecord) -> dict:
        summary, results = record.summary, record.results
        points, mode = trainer.datamodule.points, summary["mode"]
        references = summary.get("references") or {}
        maps = {"learned": record.embedding}
        epsilons = {"learned": summary["best_distortion"]}
        for name, key in (("gaussian", "best"), ("pca", "epsilon_scaled")):
            matrix = (results.get("reference_maps") or {}).get(name)
            if matrix is not None and key in references.get(name, {}):
                maps[name], epsilons[name] = dense_map(matrix, points.shape[1]), references[name][key]
        ratios = {name: ratio_sample(matrix, points, mode, self.sample, self.seed) for name, matrix in maps.items()}
        unit = "points" if mode == "norms" else "pairs"
        sampled = (
            f"all {len(points)} points"
            if mode == "norms" and len(points) <= self.sample
            else f"a seeded sample of {self.sample} {unit}"
        )
        title = f"k={summary['k']}, n={summary['n']}: ratios over {sampled}; dashed: exact 1 +- epsilon"
        lines = {}
        if "best" in references.get("gaussian", {}):
            lines[f"gaussian best of {references['gaussian']['draws']}"] = references["gaussian"]["best"]
        if "epsilon_scaled" in references.get("pca", {}):
            lines["pca best-scaled"] = references["pca"]["epsilon_scaled"]
        curves = training_curves(
            summary.get("distortion_history") or [],
            summary.get("heldout_history") or [],
            summary.get("sigma2_history") or [],
            lines,
            summary.get("switch_step"),
            f"exact epsilon of M / sqrt(k) ({mode}) and sigma^2",
        )
        return {"ratios": ratio_histogram(ratios, epsilons, title, unit), "curves": curves}

    def on_run_record(self, trainer, pl_module, record: RunRecord) -> None:
        began = time.perf_counter()
        tensorboards = [logger for logger in trainer.loggers if isinstance(logger, TensorBoardLogger)]
        if self.dirpath is None and not tensorboards:
            return
        figures = self.figures(trainer, pl_module, record)
        # what each figure cost: the shared data preparation split evenly, plus its own drawing
        shared = (time.perf_counter() - began) / len(figures)
        for name, fig in figures.items():
            drawn = time.perf_counter()
            png, pixels = render(fig, self.dpi)
            if self.dirpath is not None:
                path = self.dirpath / "figures" / FILES[name]
                path.parent.mkdir(parents=True, exist_ok=True)
                write_bytes(path, png)
                self.written.append(path)
            for logger in tensorboards:
                logger.experiment.add_image(
                    f"figures/{name}", pixels, global_step=trainer.global_step, dataformats="HWC"
                )
            self.costs[name] = shared + time.perf_counter() - drawn
        self.seconds = time.perf_counter() - began
        log.info(
            "figures drawn in %.2f s (%s)%s",
            self.seconds,
            ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.costs.items()),
            f" into {self.dirpath / 'figures'}" if self.dirpath is not None else "",
        )
