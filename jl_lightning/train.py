"""``jl-train``: the Hydra entry point.

    jl-train                          # default recipe on the paper's data
    jl-train experiment=paper         # the paper's Appendix B, as published
    jl-train -m model.k=10,20,30      # a multirun, one complete folder per job

Everything is built from conf/ with ``hydra.utils.instantiate``; this file only
wires the pieces together and writes the run folder. Lightning is imported
inside :func:`train`, so ``jl-train --help`` and ``--cfg job`` stay fast.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from jl_lightning import __version__
from jl_lightning.errors import JLInputError
from jl_lightning.export import check_fresh, fingerprint, write_results

log = logging.getLogger("jl_lightning")

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def _interactive() -> bool:
    return sys.stdout.isatty()


def _instantiate_group(group: DictConfig | None) -> list:
    """Instantiate every entry of a dict-of-configs group (callbacks, logger)."""
    from hydra.utils import instantiate

    if not group:
        return []
    return [instantiate(entry) for entry in group.values() if entry and "_target_" in entry]


def _find(objects, cls):
    return next((obj for obj in objects if isinstance(obj, cls)), None)


def train(cfg: DictConfig) -> dict:
    """Train one sampler as configured and write the run folder; returns the summary."""
    run_dir = Path(cfg.paths.output_dir)
    check_fresh(run_dir)
    summary, embedding = fit_from_config(cfg)
    summary["run_dir"] = str(run_dir)
    write_results(run_dir, embedding, summary)
    final, best, baseline = summary["final_distortion"], summary["best_distortion"], summary["baseline_gaussian"]
    reference = "no baseline (baseline.draws=0)" if baseline is None else (
        f"Gaussian N(0,1/k) baseline: mean {baseline['mean']:.3f}, best of {baseline['draws']} {baseline['best']:.3f}")
    print(f"[jl] final deterministic distortion {final:.3e} (best {best:.3e}) | {reference} | "
          f"run folder {run_dir}", flush=True)
    return summary


def fit_from_config(cfg: DictConfig, source=None) -> tuple[dict, Any]:
    """Train one sampler as configured; returns (summary, exported (k, d) float64 matrix).

    ``source`` replaces ``cfg.data.source`` (``JLEmbedding.fit`` passes an in-memory array).
    Writes nothing itself except what the configured logger and callbacks write.
    """
    started = time.perf_counter()
    from hydra.utils import instantiate

    import torch
    from lightning.pytorch import seed_everything

    _quiet_lightning()
    from lightning.pytorch.callbacks import Checkpoint, ProgressBar

    from jl_lightning.baselines import reference_figures
    from jl_lightning.callbacks import DeterministicSwitch, DistortionTracker, ReferenceLines, VarianceMonitor
    from jl_lightning.data import validate_k
    from jl_lightning.distortion import evaluate

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
    seed_everything(int(cfg.seed), workers=True, verbose=False)

    if source is None:
        datamodule = instantiate(cfg.data)
    else:  # instantiate would merge (and convert) the object into the configured source: set it after
        data_cfg = OmegaConf.to_container(cfg.data, resolve=True)
        data_cfg["source"] = None
        datamodule = instantiate(data_cfg)
        datamodule.source = source
    datamodule.setup("fit")  # loads and validates: bad data fails here, before any training
    k = validate_k(cfg.model.k, datamodule.dim)
    optimizer = instantiate(cfg.optimizer) if cfg.get("optimizer") else None
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    model = instantiate(cfg.model, dim=datamodule.dim, optimizer=optimizer, scheduler=scheduler)

    callbacks = _instantiate_group(cfg.get("callbacks"))
    interactive = _interactive()
    if not interactive:  # no progress bar in logs, CI or pipes
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    loggers = _instantiate_group(cfg.get("logger"))
    # Progress bar and checkpointing exactly when their callbacks are configured:
    # otherwise Lightning would add its own defaults behind the config's back.
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                          enable_progress_bar=interactive and _find(callbacks, ProgressBar) is not None,
                          enable_checkpointing=_find(callbacks, Checkpoint) is not None)

    references = {}
    if int(cfg.baseline.draws) > 0:
        references = reference_figures(datamodule.points, k, model.mode, draws=int(cfg.baseline.draws),
                                       seed=int(cfg.baseline.seed), methods=list(cfg.baseline.methods))
        for name, figures in references.items():
            if "mean" in figures:
                log.info("reference %s over %d draws: mean %.4g, best %.4g", name, figures["draws"],
                         figures["mean"], figures["best"])
            elif "epsilon" in figures:
                log.info("reference pca: %.4g, best-scaled %.4g", figures["epsilon"], figures["epsilon_scaled"])
    lines = _find(callbacks, ReferenceLines)
    if lines is not None:
        lines.set_references(references)
    baseline = references.get("gaussian")

    fit_started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    fit_seconds = time.perf_counter() - fit_started

    tracker = _find(callbacks, DistortionTracker)
    final = tracker.final_report if tracker and tracker.final_report else evaluate(
        model.embedding, datamodule.points, model.mode)
    if tracker and tracker.best_embedding is not None and tracker.best_distortion <= final.epsilon:
        embedding, best, best_step = tracker.best_embedding, tracker.best_distortion, tracker.best_step
    else:
        embedding, best, best_step = model.embedding, final.epsilon, trainer.global_step
    switch = _find(callbacks, DeterministicSwitch)
    monitor = _find(callbacks, VarianceMonitor)

    summary = {
        "final_distortion": final.epsilon,
        "best_distortion": best,
        "best_step": best_step,
        "exported": "embedding.npy holds the best M / sqrt(k) (shape k x d); y = embedding @ x",
        "data": getattr(datamodule.source, "name", None),
        "data_fingerprint": fingerprint(datamodule.points),
        "mode": model.mode,
        "final_report": final.to_dict(),
        "heldout": _heldout_summary(datamodule, embedding),
        "baseline_gaussian": baseline,
        "references": references,
        "switch_step": switch.switch_step if switch else None,
        # model=exact: the optimizer's own account (steps by kind, where Algorithm 1 stopped)
        "optimization": model.optimization_report() if hasattr(model, "optimization_report") else None,
        # (step, seconds since the start of training, exact epsilon) at every evaluation
        "distortion_history": tracker.history if tracker else None,
        "sigma2_final": model.variance.current(),
        "sigma2_crossings": monitor.crossings if monitor else None,
        "steps": int(trainer.global_step),
        "fit_seconds": fit_seconds,
        "wall_seconds": time.perf_counter() - started,
        "seed": int(cfg.seed),
        "n": datamodule.n,
        "n_heldout": 0 if datamodule.val_points is None else len(datamodule.val_points),
        # rows of the source held out from training (data.val_fraction, data.split_seed)
        "heldout_rows": None if datamodule.val_points is None else datamodule.val_index.tolist(),
        "duplicates": datamodule.duplicates,
        "d": datamodule.dim,
        "k": k,
        "torch_threads": torch.get_num_threads(),
        "jl_lightning_version": __version__,
        "torch_version": torch.__version__,
    }
    return summary, embedding.numpy().astype("float64")


def _heldout_summary(datamodule, embedding) -> dict | None:
    """Exact reports of the exported matrix on the held-out points, their pairs and the
    train x held-out pairs (None without a split)."""
    if datamodule.val_points is None:
        return None
    from jl_lightning.distortion import heldout_reports

    reports = heldout_reports(embedding, datamodule.points, datamodule.val_points)
    return {name: report.to_dict() for name, report in reports.items()}


def _quiet_lightning() -> None:
    """Route Lightning's messages through Hydra's log handlers only (no duplicate
    lines), drop its banner/tips at INFO level, and its warnings that do not apply
    to a full-batch, single-process run."""
    lightning_logger = logging.getLogger("lightning")
    for handler in list(lightning_logger.handlers):
        lightning_logger.removeHandler(handler)
    lightning_logger.propagate = True
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*exists and is not empty.*",
                    ".*LeafSpec.*is deprecated.*",
                    # Saving the weights after the step is what we want: the checkpoint
                    # then holds the M whose distortion DistortionTracker just measured.
                    ".*ModelCheckpoint with manual optimization.*"):
        warnings.filterwarnings("ignore", pattern)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _hydra_entry(cfg: DictConfig) -> float:
    try:
        summary = train(cfg)
    except (JLInputError, FileExistsError) as err:
        log.error("%s", err)
        print(f"jl-train: error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    return summary["final_distortion"]  # the value a Hydra sweeper minimizes


def main() -> None:
    """Console-script entry (``jl-train``)."""
    _hydra_entry()


if __name__ == "__main__":
    main()
