"""Build a run from a composed config with ``hydra.utils.instantiate``, train it, and return
what it produced: the summary, the exported matrix and every object it built.

The entry points (``apps/``) compose the config; this is the one place that turns it
into a DataModule, a module, callbacks, loggers and a Trainer.
"""

from __future__ import annotations

import copy
import logging
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.pytorch import seed_everything
from lightning.pytorch.callbacks import Checkpoint, LearningRateMonitor, ProgressBar
from omegaconf import DictConfig, OmegaConf, open_dict

from jl_lightning.constraints import Number, check
from jl_lightning.core import plan as auto_plan
from jl_lightning.core.losses import starting_temperature
from jl_lightning.core.plan import KSearch, check_eps, smallest_k
from jl_lightning.errors import JLInputError, JLRunError
from jl_lightning.io.run_folder import process_rank
from jl_lightning.io.validation import run_options, validate_k
from jl_lightning.lightning.callbacks import ProgressLog, RunSummary
from jl_lightning.lightning.targets import check_targets

log = logging.getLogger("jl_lightning")


@dataclass
class FitResult:
    """``summary`` (summary.json's content), ``embedding`` (the exported (k, d) float64
    matrix) and ``objects``: cfg, datamodule, model, trainer, callbacks, loggers."""

    summary: dict
    embedding: np.ndarray
    objects: dict = field(default_factory=dict)


def instantiate_group(group) -> list:
    """Instantiate every entry of a dict-of-configs group (callbacks, logger)."""

    if not group:
        return []
    return [instantiate(entry) for entry in group.values() if entry and "_target_" in entry]


def quiet_lightning() -> None:
    """Route Lightning's messages through the root log handlers only (no duplicate lines),
    drop its banner and tips at INFO level, and its warnings that do not apply to a
    full-batch, single-process run."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # each has its own stderr handler
        lightning_logger = logging.getLogger(name)
        for handler in list(lightning_logger.handlers):
            lightning_logger.removeHandler(handler)
        lightning_logger.propagate = True
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    for pattern in (
        ".*does not have many workers.*",
        ".*exists and is not empty.*",
        ".*LeafSpec.*is deprecated.*",
        # saving after the step is what we want: the checkpoint then holds the M
        # whose distortion DistortionTracker just measured
        ".*ModelCheckpoint with manual optimization.*",
        # the documented differentiable all-gather (core/sharding.py); its suggested
        # replacement is a private torch module
        ".*torch.distributed.nn.functional.all_gather is deprecated.*",
        # every scalar reaches the loggers on the run's own schedule (log_schedule.py), not on
        # Lightning's logging interval, so a run shorter than that interval loses nothing
        ".*is smaller than the logging interval.*",
    ):
        warnings.filterwarnings("ignore", pattern)


# The settings that define an experiment, one HParams name each (the whole resolved config
# is the run's .hydra/config.yaml). TensorBoard's HParams table shows five settings until a
# box is ticked: those that differ between the runs, then the rest by name. The numbered
# groups put what a sweep is read by (k, lr) first whatever else the jobs share, as the
# scalar tags' numbered groups order the Scalars tab.
HPARAM_NAMES = {
    "model.k": "1_main/k",
    "optimizer.lr": "1_main/lr",
    "model.mode": "1_main/mode",
    "trainer.max_steps": "1_main/steps",
    "model.n_samples": "2_sampler/n_samples",
    "model.variance": "2_sampler/variance",
    "model.loss.pair_strategy": "2_sampler/pair_strategy",
    "model.loss.smooth_temperature": "2_sampler/temperature",
    "model.loss.smooth_temperature_end": "2_sampler/temperature_end",
    "model.subspace_penalty": "2_sampler/subspace_penalty",
    "data.val_fraction": "3_data/val_fraction",
    "data.source.path": "3_data/file",
    "seed": "4_run/seed",
    "task_name": "4_run/task_name",
    "optimized_metric": "4_run/optimized_metric",
    "experiment": "4_run/experiment",
}
CLASS_NAMES = {"data.source": "3_data/source", "optimizer": "4_run/optimizer", "scheduler": "4_run/scheduler"}


def hparam_name(key: str) -> str:
    """The HParams name of config key ``key`` (dotted): its ``HPARAM_NAMES`` name, or the
    key with ``/`` for dots (a setting outside the curated set that a command line changed)."""
    return HPARAM_NAMES.get(key, key.replace(".", "/"))


def _short(value):
    """A value as HParams shows it: numbers, bools and strings as they are; a class path by
    its name; a file by its name (no machine's folders); lists as text."""
    if isinstance(value, str) and "/" in value:
        return value.rsplit("/", 1)[-1]
    if isinstance(value, (int, float, bool, str)) or value is None:
        return value
    return str(value)


def run_hyperparameters(cfg: DictConfig) -> dict:
    """The loggers' hyperparameters: a curated set, flat, one name per setting
    (``HPARAM_NAMES`` where the config has it, the class of the data source, optimizer and
    scheduler; the fit adds the training points' n and d), plus every setting the command
    line changed (a sweep's parameters), under :func:`hparam_name`; nothing machine-specific
    (no paths but a data file's name). The full config is the run's ``.hydra/config.yaml``."""

    def pick(key: str):
        node = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node

    params = {}
    for key, name in HPARAM_NAMES.items():
        try:
            value = pick(key)
        except Exception:  # an interpolation only a Hydra run resolves
            continue
        if value is not None and not isinstance(value, (dict, list)):
            params[name] = _short(value)
    temperature_name = HPARAM_NAMES["model.loss.smooth_temperature"]
    if params.get(temperature_name) == "auto":  # the loss resolves it when built
        temperature = starting_temperature("auto", pick("model.mode") or "norms", pick("model.loss.pair_strategy"))
        params[temperature_name] = "hard max" if temperature is None else temperature
    for group, name in CLASS_NAMES.items():
        target = OmegaConf.select(cfg, group + "._target_", default=None)
        if target:
            params[name] = str(target).rsplit(".", 1)[-1]
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    for item in overrides:  # what this run (a sweep's job) changed
        key, sep, value = item.lstrip("+~").partition("=")
        if not sep or not ((not key.startswith("hydra.") and "." in key) or key in ("seed", "experiment")):
            continue
        if key != "experiment":
            try:
                value = pick(key)
            except Exception:
                continue
        if value is not None and not isinstance(value, (dict, list)):
            params[hparam_name(key)] = _short(value)
    return params


def build_datamodule(data_cfg: DictConfig, source=None):
    """The DataModule of a ``data`` config node, set up (bad data fails here, before any
    training). ``source`` replaces its ``source`` (``JLEmbedding.fit`` passes an array)."""

    if source is None:
        datamodule = instantiate(data_cfg)
    else:  # instantiate would merge (and convert) the object into the configured source: set it after
        data_cfg = OmegaConf.to_container(data_cfg, resolve=True)
        data_cfg["source"] = None
        datamodule = instantiate(data_cfg)
        datamodule.source = source
    datamodule.setup("fit")
    return datamodule


def fit_from_config(cfg: DictConfig, source=None, interactive: bool | None = None, ckpt_path=None) -> FitResult:
    """Train one sampler as configured. Writes nothing itself except what the configured
    logger and callbacks write. ``interactive`` (default: stdout is a terminal) keeps the
    progress bar; logs, CI and pipes get none. ``ckpt_path``: continue from that checkpoint
    (Lightning restores the module, optimizer, schedule, loops and callbacks; the module
    and callbacks add what makes the continuation exact: the RNG state, the active pairs,
    the tracker's best matrix and history)."""
    started = time.perf_counter()
    check_targets(cfg)  # before anything is built: a config names only classes the project allows
    seed = _prepare_process(cfg)
    datamodule = build_datamodule(cfg.data, source)
    cfg, settings = resolve_auto(cfg, datamodule.n, datamodule.dim, datamodule.width)
    model = build_model(cfg, datamodule.dim)
    if "line" in settings:  # once the model is built: a bad option is refused in one line, alone
        log.info("%s", settings.pop("line"))
    callbacks, summary_callback = build_callbacks(cfg, interactive)
    loggers = instantiate_group(cfg.get("logger"))
    if not loggers:  # Lightning's LearningRateMonitor refuses a run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    # the data's size as trained on (after the held-out split), whatever the source
    hyperparameters = {**run_hyperparameters(cfg), "3_data/n": datamodule.n, "3_data/d": datamodule.dim}
    for logger in loggers:  # hparams.yaml beside the logs, and TensorBoard's HParams tab at the end
        logger.log_hyperparams(hyperparameters)
    # progress bar and checkpointing exactly when their callbacks are configured:
    # otherwise Lightning would add its own defaults behind the config's back
    trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        enable_progress_bar=any(isinstance(c, ProgressBar) for c in callbacks),
        enable_checkpointing=any(isinstance(c, Checkpoint) for c in callbacks),
    )
    trainer.fit(model, datamodule=datamodule, ckpt_path=None if ckpt_path is None else str(ckpt_path))
    if trainer.interrupted:
        raise JLRunError("training was interrupted; nothing was exported")
    summary = dict(summary_callback.summary, seed=seed, wall_seconds=time.perf_counter() - started)
    if settings:
        summary["auto_settings"] = settings
    gap = heldout_gap(summary)
    if gap is not None:
        summary["heldout_gap"] = gap
    objects = {
        "cfg": cfg,
        "datamodule": datamodule,
        "model": model,
        "trainer": trainer,
        "callbacks": callbacks,
        "loggers": loggers,
    }
    return FitResult(summary, summary_callback.embedding, objects)


def _prepare_process(cfg: DictConfig) -> int:
    """Quiet Lightning, the other ranks' logs, threads and seeds; check the top-level options and
    trainer.max_steps. Returns the seed."""
    quiet_lightning()
    if process_rank() > 0:  # rank 0 tells how the run goes; the others only warn
        logging.getLogger("jl_lightning").setLevel(logging.WARNING)
    seed, threads = run_options(cfg)
    if threads is not None:
        torch.set_num_threads(threads)
    seed_everything(seed, workers=True, verbose=False)
    steps = Number(low=1, integer=True, what="a positive integer (the number of training steps) or auto")
    if cfg.trainer.get("max_steps") != auto_plan.AUTO:
        check("trainer.max_steps", cfg.trainer.get("max_steps"), steps)
    return int(seed)


HELDOUT_LIMIT = 1.25  # held-out pairs' epsilon over the training epsilon that a run accepts silently
HELDOUT_ADVICE = (
    "model.subspace_penalty (e.g. 0.3: damps directions the training points do not span) or "
    "data.select_fraction (e.g. 0.1: exports the matrix best on pairs kept out of the loss)"
)


def heldout_gap(summary: dict) -> dict | None:
    """How far the held-out pairs' epsilon is above the training epsilon, against
    ``HELDOUT_LIMIT``, with the options that narrow it when it is over (None: no held-out pairs)."""
    pairs = (summary.get("heldout") or {}).get("pairs")
    train = summary.get("best_distortion")
    if not pairs or not train:
        return None
    ratio = pairs["epsilon"] / train
    gap = {"ratio": ratio, "limit": HELDOUT_LIMIT, "within": ratio <= HELDOUT_LIMIT}
    if ratio > HELDOUT_LIMIT:
        gap["advice"] = HELDOUT_ADVICE
    return gap


AUTO_PATHS = {
    "model.subspace_penalty": "subspace_penalty",
    "model.n_samples": "n_samples",
    "optimizer.lr": "lr",
    "scheduler.T_max": "lr_horizon",
    "callbacks.distortion_tracker.every_n_steps": "certify_every",
    "callbacks.early_stopping.patience": "stop_patience",
    "callbacks.early_stopping.min_delta": "stop_min_delta",
}


def resolve_auto(cfg: DictConfig, n: int, dim: int, width: float | None = None) -> tuple[DictConfig, dict]:
    """``cfg`` with every ``auto`` in ``model.loss``, at ``AUTO_PATHS`` and in
    ``trainer.max_steps`` replaced by the plan for ``n`` training points of dimension ``dim``
    (``width``: a step's values per point, the mean non-zeros of sparse rows; default ``dim``)
    (``core/plan.py``), and what was chosen, for the log and summary.json ({} if nothing was
    auto). Values set anywhere else are kept."""
    model = cfg.model
    mode = model.get("mode", "norms") if "loss" in model else "norms"
    k = validate_k(model.k, dim)
    cfg = cfg.copy()
    chosen = {}
    loss = model.get("loss") or {}
    active = mode == "pairs" and loss.get("pair_strategy", "active") == "active"
    n_hard = loss.get("active_hard")
    n_hard = auto_plan.ACTIVE_HARD if n_hard == auto_plan.AUTO else int(n_hard or 0)
    pairs = n_hard + int(loss.get("active_random") or 0) if active else None
    work = auto_plan.step_work(n=n, width=dim if width is None else width, k=k, active_pairs=pairs)
    if cfg.trainer.get("max_steps") == auto_plan.AUTO:
        steps = auto_plan.default_steps(work)
        with open_dict(cfg):
            cfg.trainer.max_steps = chosen["trainer.max_steps"] = steps
    steps = int(cfg.trainer.max_steps)
    certify = OmegaConf.select(cfg, "callbacks.distortion_tracker.every_n_steps", default=None)
    # patience counts certifications: the tracker's period where set, else the logging period
    period = certify if isinstance(certify, int) and certify > 0 else int(cfg.log_every)
    plan = auto_plan.choose(mode=mode, n=n, d=dim, k=k, steps=steps, log_every=period, work=work)
    with open_dict(cfg):
        if "loss" in model:
            loss, picked = auto_plan.resolve(OmegaConf.to_container(model.loss, resolve=True), plan)
            cfg.model.loss = loss
            chosen.update({f"model.loss.{name}": value for name, value in picked.items()})
        for path, name in AUTO_PATHS.items():
            _, picked = auto_plan.resolve({name: OmegaConf.select(cfg, path)}, plan)
            if picked and picked[name] is None:  # the tracker at the logging period
                picked[name] = int(cfg.log_every)
            if picked:
                OmegaConf.update(cfg, path, picked[name])
                chosen[path] = picked[name]
    if not chosen:
        return cfg, {}
    settings = {"regime": plan.regime, "n": n, "d": dim, "k": k, "steps": steps, "chosen": chosen}
    if mode == "pairs":
        settings["line"] = auto_plan.describe(plan, n, dim, k, steps)
    return cfg, settings


def build_model(cfg: DictConfig, dim: int):
    """The configured module for data of dimension ``dim``, with its optimizer and schedule."""
    k = validate_k(cfg.model.k, dim)
    optimizer = instantiate(cfg.optimizer) if cfg.get("optimizer") else None
    if optimizer is not None:  # torch checks lr and friends only when the optimizer is built
        try:
            optimizer(params=[torch.zeros(1, requires_grad=True)])
        except (ValueError, TypeError) as err:
            raise JLInputError(f"optimizer: {err}") from None
    scheduler = instantiate(cfg.scheduler) if cfg.get("scheduler") else None
    return instantiate(cfg.model, k=k, dim=dim, optimizer=optimizer, scheduler=scheduler)


def build_callbacks(cfg: DictConfig, interactive: bool | None) -> tuple[list, RunSummary]:
    """The configured callbacks: a terminal (``interactive``, default: stdout is one) gets the
    bar, everything else the periodic progress line, never both; a RunSummary is added when
    the group has none, so every run reports."""
    callbacks = instantiate_group(cfg.get("callbacks"))
    if interactive is None:
        interactive = sys.stdout.isatty()
    callbacks = [c for c in callbacks if not isinstance(c, ProgressLog if interactive else ProgressBar)]
    summary_callback = next((c for c in callbacks if isinstance(c, RunSummary)), None)
    if summary_callback is None:
        summary_callback = RunSummary()
        callbacks.append(summary_callback)
    return callbacks, summary_callback


# what a fit of the k search leaves out: everything that writes or only reports (the search
# keeps the epsilon of each k; the run at the k found writes the folder)
SEARCH_LEAVES_OUT = (
    "model_checkpoint",
    "best_checkpoint",
    "progress_bar",
    "run_figures",
    "tensorboard_report",
    "graceful_stop",
    "recall",
    "reference_lines",
)


def search_k(cfg: DictConfig, source=None) -> KSearch:
    """``model.k=auto``: the smallest k whose training epsilon is at most ``model.eps``, by
    bisection under min(d, the JL bound) (``core.plan.smallest_k``). Each k is one fit of ``cfg``
    with that k, without loggers, checkpoints, figures, references or recall, in a scratch
    folder; the run at the k found is then an ordinary run of the same settings and seed, so
    it reaches the epsilon its search fit reached.

    Parameters
    ----------
    cfg : DictConfig
        A composed jl-train config with ``model.k: auto`` and ``model.eps`` in (0, 1).
    source : optional
        The points, replacing ``cfg.data.source`` (as :func:`fit_from_config` takes them).

    Returns
    -------
    KSearch
        The k found, the JL bound's k and every k tried with its epsilon.

    Examples
    --------
    >>> from jl_lightning.apps.config import compose  # doctest: +SKIP
    >>> search_k(compose(["data=tiny", "model.k=auto", "model.eps=0.5"])).k  # doctest: +SKIP
    """
    eps = check_eps(cfg.model.get("eps"))
    check_targets(cfg)
    datamodule = build_datamodule(cfg.data, source)  # the points' n and d bound the search
    n, d = datamodule.n, datamodule.dim
    del datamodule

    def epsilon_at(k: int) -> float:
        trial = copy.deepcopy(cfg)
        with open_dict(trial), tempfile.TemporaryDirectory(prefix="jl_k_search_") as scratch:
            trial.model.k = k
            trial.logger = None
            trial.baseline.draws = 0
            trial.paths.output_dir = scratch
            for name in SEARCH_LEAVES_OUT:
                if trial.get("callbacks") and name in trial.callbacks:
                    trial.callbacks[name] = None
            summary = fit_from_config(trial, source, interactive=False).summary
        epsilon = float(summary["best_distortion"])
        log.info("k search: k=%d reaches epsilon %.4g in %d steps (target %g)", k, epsilon, summary["steps"], eps)
        return epsilon

    search = smallest_k(epsilon_at, n=n, d=d, eps=eps)
    if not search.reached:
        log.warning(
            "k search: the largest k allowed, %d = min(d, JL bound), reaches epsilon %.4g > %g; keeping it",
            search.k,
            search.tried[0][1],
            eps,
        )
    return search
