"""``jl-train``: the Hydra entry point.

    jl-train                          # default recipe on the paper's data
    jl-train experiment=paper         # the paper's Appendix B, as published
    jl-train -m model.k=10,20,30      # a multirun, one complete folder per job

Everything is built from conf/ (``lightning/fit.py``); this file refuses an occupied run
folder, trains, writes the results and says how the run went.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from jl_lightning.apps.config import (
    CONFIG_PATH,
    TOP_LEVEL,
    check_run_config,
    failed_job,
    log_thread_errors,
    refuse_and_exit,
    run_hydra_app,
    stop_and_exit,
)
from jl_lightning.apps.sweep_summary import check_metric, sweeper_value
from jl_lightning.core.plan import AUTO
from jl_lightning.errors import JLInputError
from jl_lightning.io.run_folder import atomic_write, check_fresh, process_rank, write_results
from jl_lightning.lightning.callbacks.graceful_stop import RunStopped, stop_on_signals
from jl_lightning.lightning.fit import fit_from_config, search_k


def resumed_config(cfg: DictConfig) -> tuple[DictConfig, Path]:
    """The killed run ``cfg.resume``'s own config (its .hydra/config.yaml) and its
    checkpoints/last.ckpt. A resumed run never mixes a new config with an old checkpoint, so
    any other override given with ``resume=`` is refused."""

    run_dir = Path(str(cfg.resume))
    saved_path = run_dir / ".hydra" / "config.yaml"
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    if not saved_path.is_file() or not checkpoint.is_file():
        raise JLInputError(
            f"resume={run_dir}: expected a killed jl-train run folder with .hydra/config.yaml and checkpoints/last.ckpt"
        )
    overrides = _task_overrides()
    others = [o for o in overrides if not o.startswith("resume=")]
    # without resume= on the command line the run guard continues a requeued SLURM job: its
    # command is the one that made the folder (the folder's name is that command's digest)
    if others and len(others) < len(overrides):
        raise JLInputError(
            f"resume={run_dir} continues the run with its own config; give resume= alone "
            f"(also given: {' '.join(others)})"
        )
    saved = OmegaConf.load(saved_path)
    # a run folder is input: its config has jl-train's shape and names only classes the
    # project allows, checked before anything in the folder changes or is built
    check_run_config(saved, f"resume={run_dir}")
    check_checkpoint(checkpoint, f"resume={run_dir}")
    # the final phase's figures of a run stopped in it (a signal, a full disk): rewritten
    for stale in (run_dir / "figures").glob("*.png"):
        stale.unlink()
    with open_dict(saved):
        saved.resume = str(run_dir)
        saved.paths.output_dir = str(run_dir)
    return saved, checkpoint


def check_checkpoint(path: Path, option: str) -> None:
    """Refuse (one line) a checkpoint that is truncated, not a torch file, holds pickled objects,
    or was not written by jl-train (no module weights M, no loop state). Read as Lightning
    reads it: tensors and plain containers only, never pickled code."""

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise JLInputError(
            f"{option}: {path} cannot be read as a checkpoint: truncated, damaged, not a torch file "
            f"or holding pickled objects ({type(err).__name__}); start the run again"
        ) from None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or "mean" not in state or "loops" not in checkpoint:
        raise JLInputError(f"{option}: {path} is not a jl-train checkpoint (no sampler mean M or loop state)")


K_SEARCH_FILE = "k_search.json"


def resolve_k(cfg: DictConfig, run_dir: Path, writer: bool) -> tuple[DictConfig, dict]:
    """``model.k=auto``: ``cfg`` with the k that :func:`~jl_lightning.lightning.fit.search_k`
    finds, and the search (summary.json's ``k_search``), kept in the run folder's
    k_search.json so that ``resume=`` continues with that k instead of searching again."""
    if _launches_processes(cfg) or process_rank() > 0 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise JLInputError(
            "model.k=auto searches k on one process; give trainer.devices=1, or the k it found as model.k"
        )
    saved = run_dir / K_SEARCH_FILE
    if cfg.get("resume") and saved.is_file():
        search = read_k_search(saved)
    else:
        search = search_k(cfg).to_dict()
        if writer:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(saved, lambda handle: handle.write(json.dumps(search, indent=2)), mode="w")
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.model.k = search["k"]
    return cfg, search


def read_k_search(path: Path) -> dict:
    """A run folder's k_search.json (input: checked, one line if it is not what jl-train wrote)."""
    try:
        search = json.loads(path.read_text())
        if isinstance(search.get("k"), bool) or not isinstance(search.get("k"), int) or search["k"] < 1:
            raise ValueError
    except (OSError, ValueError, AttributeError):
        raise JLInputError(
            f"{path}: expected the k search jl-train wrote (a JSON object with a positive integer k)"
        ) from None
    return search


def _task_overrides() -> list[str]:
    """The command-line overrides of this Hydra run (none outside one)."""

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def final_line(summary: dict) -> str:
    """The run's last line: its distortion, the Gaussian reference in words that say which
    is lower, the held-out pairs' epsilon when it is over ``HELDOUT_LIMIT`` times the training
    one (and what may help), the run folder; a run whose sigma^2 never reached 0 says so first."""
    eps = summary["best_distortion"]
    head = f"final deterministic distortion {summary['final_distortion']:.3e} (best {eps:.3e})"
    if not summary.get("converged", True):
        head = (
            f"NOT CONVERGED: sigma^2 = {summary['sigma2_final']:.3g} at the last step, the switch to the "
            f"deterministic mean never happened (more trainer.max_steps?); {head}"
        )
    baseline = summary["baseline_gaussian"]
    if baseline is None:
        reference = "no baseline (baseline.draws=0)"
    else:
        verdict = (
            "below the best Gaussian draw"
            if eps < baseline["best"]
            else "NOT below the best Gaussian draw: a random matrix does as well or better"
        )
        reference = (
            f"Gaussian N(0,1/k) baseline: mean {baseline['mean']:.3f}, best of {baseline['draws']} "
            f"{baseline['best']:.3f}; {verdict}"
        )
    gap = summary.get("heldout_gap")
    if gap and not gap["within"]:
        reference += (
            f" | held-out pairs {gap['ratio']:.2f} x training epsilon (over {gap['limit']:g} x): try {gap['advice']}"
        )
    return f"{head} | {reference} | run folder {summary['run_dir']}"


def to_log_files(line: str) -> None:
    """``line`` into the run's log file (train.log) as well: the console already has it."""

    record = logging.LogRecord("jl_lightning", logging.INFO, __file__, 0, line, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _launches_processes(cfg: DictConfig) -> bool:
    """Whether Lightning itself would start more processes by running this command line
    again (a DDP strategy with several devices or nodes, and no launcher that started them:
    torchrun or SLURM set the rank's environment)."""
    trainer = cfg.get("trainer") or {}
    strategy = trainer.get("strategy")
    name = str(strategy.get("_target_", "") if hasattr(strategy, "get") else strategy or "").lower()
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1) or 1
    several = not (devices in (1, "1") or (isinstance(devices, (list, tuple)) and len(devices) == 1)) or nodes > 1
    return "ddp" in name and several and "WORLD_SIZE" not in os.environ and "SLURM_NTASKS" not in os.environ


def train(cfg: DictConfig) -> tuple[dict, dict]:
    """Train one sampler as configured and write the run folder (rank 0 of a distributed
    run writes it; every rank trains).

    Returns ``(summary, objects)``: summary.json's content, and every object the run built
    (cfg, datamodule, model, trainer, callbacks, loggers).
    """

    run_dir = Path(cfg.paths.output_dir)
    unknown = sorted(set(cfg.keys()) - TOP_LEVEL)
    if unknown:
        raise JLInputError(
            f"unknown option(s) {', '.join(unknown)}: nothing reads them (to continue a killed run "
            "use resume=RUN_DIR); the top-level options are " + ", ".join(sorted(TOP_LEVEL))
        )
    check_metric(cfg.get("optimized_metric", "best_distortion"), cfg.data.get("val_fraction", 0))
    if _in_multirun() and _launches_processes(cfg):
        raise JLInputError(
            "trainer=ddp with several devices cannot run inside a multirun (-m): Lightning starts "
            "the other processes by running the whole command line again; run the jobs one at a "
            "time, or let hydra/launcher=submitit_slurm start one task per device"
        )
    writer = process_rank() == 0
    if writer:
        check_fresh(run_dir)
    checkpoint = None
    if cfg.get("resume"):
        cfg, checkpoint = resumed_config(cfg)
    search = None
    sampler_eps = cfg.model.get("eps") is not None and "GaussianSampler" in str(cfg.model.get("_target_", ""))
    if sampler_eps and cfg.model.get("k") != AUTO:
        raise JLInputError(
            f"model.eps={cfg.model.eps} is the target of model.k=auto; with model.k={cfg.model.k} nothing reads it"
        )
    if cfg.model.get("k") == AUTO:
        cfg, search = resolve_k(cfg, run_dir, writer)
    result = fit_from_config(cfg, ckpt_path=checkpoint)
    result.summary["run_dir"] = str(run_dir)
    if search is not None:
        result.summary["k_search"] = search
    if writer:
        write_results(run_dir, result.embedding, result.summary)
        line = f"[jl] {final_line(result.summary)}"
        print(line, flush=True)
        to_log_files(line)
    return result.summary, result.objects


def _in_multirun() -> bool:

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
def _hydra_entry(cfg: DictConfig) -> float:
    log_thread_errors()
    try:
        with stop_on_signals():
            summary, _ = train(cfg)
    except RunStopped as stop:
        stop_and_exit("jl-train", cfg.paths.output_dir, stop)
    except Exception as err:
        if _in_multirun():  # one bad job: the others run, and the sweep summary says why it failed
            return failed_job("jl-train", cfg.paths.output_dir, err)
        refuse_and_exit("jl-train", cfg.paths.output_dir, err)
    return sweeper_value(summary, cfg.get("optimized_metric", "best_distortion"))


def main() -> None:
    """Console-script entry (``jl-train``)."""
    run_hydra_app("jl-train", _hydra_entry, "train")


if __name__ == "__main__":
    main()
