"""Where the configs live, and composing them outside a Hydra run (``JLEmbedding.fit``, tests)."""

from __future__ import annotations

import errno
import gc
import inspect
import logging
import math
import os
import re
import shutil
import signal
import sys
import threading
import warnings
from importlib.resources import files
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.core.hydra_config import HydraConfig
from hydra.errors import (
    ConfigCompositionException,
    InstantiationException,
    MissingConfigException,
    OverrideParseException,
)
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from jl_lightning.apps import slurm
from jl_lightning.apps.sweep_summary import job_folder_name, record_failure
from jl_lightning.errors import DuplicatePointsWarning, JLInputError
from jl_lightning.io.run_folder import release_lock
from jl_lightning.lightning.targets import check_override_targets, check_targets

# The configs ship inside the package: conf/ at the repository root is the subpackage
# jl_lightning.conf (pyproject's package-dir), so an editable install, `pip install .` and a
# wheel all find them on Hydra's package search path.
CONFIG_MODULE = "jl_lightning.conf"
CONFIG_PATH = f"pkg://{CONFIG_MODULE}"
CONFIG_DIR = str(files(CONFIG_MODULE))

# conf/hydra/default.yaml: a resumed run lives in its own folder, and keeps its .hydra/config.yaml
# and under SLURM a run's folder is keyed by the job, so that a requeued job finds it (apps/slurm.py)
OmegaConf.register_new_resolver(
    "jl_run_dir",
    lambda resume, fresh, task, overrides: str(resume) if resume else slurm.run_dir(fresh, task, overrides),
    replace=True,
)
OmegaConf.register_new_resolver(
    "jl_output_subdir", lambda resume, resumed: resumed if resume else ".hydra", replace=True
)
# conf/hydra/default.yaml: a sweep job's folder is named after its number and its overrides
OmegaConf.register_new_resolver("jl_job_folder", job_folder_name, replace=True)


def compose(overrides: list[str] | tuple = (), config_name: str = "train") -> DictConfig:
    """``conf/<config_name>.yaml`` composed with ``overrides``, as the entry point would."""

    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def user_error_message(err: BaseException) -> str | None:
    """The one line to print for an error the user can fix, or None for a real bug.

    Unwraps what Hydra's ``instantiate`` wraps (the ``JLInputError`` raised inside a
    constructor) and names a mandatory option left unset (``???`` in the YAML).
    """

    seen = err
    while seen is not None:
        if isinstance(seen, (JLInputError, FileExistsError)):
            return str(seen)
        if isinstance(seen, MissingMandatoryValue):
            key = getattr(seen, "full_key", None) or "an option"
            return f"{key} is required but not set; give it on the command line, e.g. {key}=VALUE"
        seen = seen.__cause__ or seen.__context__
    if isinstance(err, InstantiationException):
        return instantiate_error_message(err)
    if isinstance(err, OmegaConfBaseException):
        return f"the config is not valid: {str(err).splitlines()[0]}"
    return None


# the file system said no: full, over a quota or a file-size limit, read-only, failing
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


def disk_error(err: BaseException) -> OSError | None:
    """The OSError of a full or failing disk behind ``err`` (also one a background writer
    thread raised and Lightning or TensorBoard re-raised), or None."""
    seen = err
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in DISK_ERRNOS:
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def refuse_and_exit(program: str, run_dir, err: Exception) -> None:
    """The entry points' error path: a user error is one line on stderr and exit status 2,
    after the run folder this run created is removed; a full disk mid-run is one line and
    exit status 1, the folder kept as it is, incomplete (no summary.json, no embedding.npy)
    and resumable from its last checkpoint; anything else is re-raised (a bug)."""

    disk = disk_error(err)
    if disk is not None:
        folder = Path(str(run_dir))
        if not (folder / "summary.json").exists():  # a matrix without its summary would look finished
            (folder / "embedding.npy").unlink(missing_ok=True)
        then = (
            f"free space, then continue with: jl-train resume={run_dir}"
            if release_keeping_resumable(run_dir)
            else "free space and run the command again"
        )
        print(
            f"{program}: error: writing {disk.filename or run_dir} failed ({disk.strerror}); the run folder "
            f"{run_dir} is incomplete (no summary.json); {then}",
            file=sys.stderr,
            flush=True,
        )
        sys.exit(1)
    message = user_error_message(err)
    release_lock(run_dir, abandon=True)
    if message is None:
        raise err
    print(f"{program}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def release_keeping_resumable(run_dir) -> bool:
    """Release this run's lock after it stopped short; its folder stays when it holds a
    checkpoint to resume from, and is removed (if this run created it) otherwise. Returns
    whether it can be resumed."""
    # lazy: jl-embed and jl-compare use this module and never need Lightning's callbacks
    from jl_lightning.lightning.callbacks.graceful_stop import checkpoint_path  # noqa: PLC0415

    resumable = checkpoint_path(run_dir).is_file()
    release_lock(run_dir, abandon=not resumable)
    return resumable


def log_thread_errors() -> None:
    """A background thread's exception (TensorBoard's writer on a full disk) goes to the log,
    not as a traceback on stderr: the main thread meets the same error and reports it in one line."""

    def hook(args) -> None:
        logging.getLogger("jl_lightning").error(
            "background thread %s failed: %s: %s",
            getattr(args.thread, "name", "?"),
            args.exc_type.__name__,
            args.exc_value,
        )

    threading.excepthook = hook


def stop_and_exit(program: str, run_dir, stop) -> None:
    """The entry points' path for a run stopped by a signal (``RunStopped``): one line on
    stderr saying where it stopped and how to continue, the lock released, and exit status
    128 + the signal number. A run stopped before it saved any step leaves nothing behind."""

    name = signal.Signals(stop.signum).name
    if not release_keeping_resumable(run_dir):
        message = f"stopped by {name} before any training step was saved; nothing was kept (run the command again)"
    elif stop.checkpoint is not None:
        where = f"at step {stop.step}" + (f" of {stop.max_steps}" if stop.max_steps else "")
        message = (
            f"stopped by {name} {where}; checkpoints/last.ckpt holds that step; "
            f"continue with: jl-train resume={run_dir}"
        )
    else:
        message = (
            f"stopped by {name}; continue from its last checkpoint (checkpoints/last.ckpt) with: "
            f"jl-train resume={run_dir}"
        )
    print(f"{program}: {message}", file=sys.stderr, flush=True)
    sys.exit(stop.exit_code)


def instantiate_error_message(err: BaseException) -> str:
    """One line for an error Hydra's ``instantiate`` reports: an option the class does not
    take is named with the options it does take."""

    text = str(err)
    target = re.search(r"Error in call to target '([^']+)'", text)
    full_key = re.search(r"full_key: (\S+)", text)
    cause = err.__cause__
    where = full_key.group(1) if full_key else "the config"
    unexpected = re.search(r"unexpected keyword argument '([^']+)'", str(cause)) if cause else None
    if target and unexpected:
        name = unexpected.group(1)
        try:
            accepted = [p for p in inspect.signature(get_class(target.group(1))).parameters if p != "self"]
        except Exception:
            accepted = []
        listed = f"; {where} takes: {', '.join(accepted)}" if accepted else ""
        return f"{where}.{name}: no such option for {target.group(1).rsplit('.', 1)[-1]}{listed}"
    if cause is not None:
        return f"{where} could not be built: {type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
    return f"the config could not be built: {text.splitlines()[0]}"


def _command_overrides() -> list[str]:
    return [a for a in sys.argv[1:] if not a.startswith("-")]


# Hydra's override grammar gives = , [ ] { } ( ) ' " $ : and whitespace a meaning; a path
# (or any value) holding one is read as a string only inside quotes
QUOTE_HINT = (
    "A value holding = , [ ] { } ( ) $ quotes or spaces (a file name, say) must be quoted for Hydra, "
    "the quotes kept from the shell: \"data.source.path='my,file=1.npy'\"; a newline cannot be passed"
)


def composition_error_message(err: BaseException, config_name: str) -> str | None:
    """One line for Hydra's own errors before a run starts (an unknown config group option,
    an unknown key, an override it cannot parse), naming the option and what it accepts; None
    for anything else."""

    text = str(err)
    if isinstance(err, MissingConfigException) and not Path(CONFIG_DIR, "train.yaml").is_file():
        return (
            f"the configs are not at {CONFIG_DIR}: the package was installed without its data; "
            "reinstall it (pip install .)"
        )
    if isinstance(err, MissingConfigException) or "Could not find '" in text:
        found = re.search(r"Could not find '([^']+)'", text)
        options = [line.strip() for line in text.splitlines() if line.startswith("\t") and "provider=" not in line]
        missing = found.group(1) if found else "a config"
        group, _, name = missing.rpartition("/")
        listed = f"; choose from {', '.join(o for o in options if o != 'common')}" if options else ""
        return (
            f"{group or 'config'}={name}: no such {group or 'config'} config{listed}"
            if group
            else f"no config {missing!r}{listed}"
        )
    if isinstance(err, OverrideParseException) or "Ambiguous value for argument" in text:
        first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
        return f"could not parse an override: {first}. {QUOTE_HINT}"
    if isinstance(err, ConfigCompositionException):
        found = re.search(r"Could not override '([^']+)'", text)
        if not found:
            cause = err.__cause__
            return f"the config could not be composed: {text.splitlines()[0]}" + (
                f" ({str(cause).splitlines()[0]})" if cause else ""
            )
        key = found.group(1)
        parent, _, leaf = key.rpartition(".")
        accepted = _accepted_keys(parent, key, config_name)
        listed = f"; {parent or 'the top level'} takes: {', '.join(accepted)}" if accepted else ""
        return f"{key}: no such option{listed} (to add a new key anyway: +{key}=...)"
    return None


def _accepted_keys(parent: str, bad_key: str, config_name: str) -> list[str]:
    """The keys of ``parent`` in the config composed without the override of ``bad_key``."""

    others = [o for o in _command_overrides() if not o.lstrip("+~").startswith(bad_key + "=")]
    try:
        cfg = compose(others, config_name=config_name)
        node = OmegaConf.select(cfg, parent) if parent else cfg
        return sorted(str(k) for k in node.keys() if not str(k).startswith("_")) if hasattr(node, "keys") else []
    except Exception:
        return []


def run_hydra_app(program: str, entry, config_name: str) -> None:
    """Run a ``@hydra.main`` entry with Hydra's own errors (composition, overrides) as one line
    on stderr and exit status 2. ``HYDRA_FULL_ERROR=1`` keeps Hydra's full report.

    The process ends right after: ``gc.freeze()`` spares the interpreter's last garbage
    collections at exit, which walk every object torch and Lightning created (about a
    second of a short run). Files, logs and atexit handlers close as usual.

    The data's duplicate-rows warning is left to the run's log, which prints it on the
    terminal and into train.log; as a Python warning too it would show twice. (Library
    callers, ``JLEmbedding``, get the warning.)"""
    warnings.filterwarnings("ignore", category=DuplicatePointsWarning)
    try:
        # Hydra instantiates its own callbacks, launcher and sweeper from the command line
        # before the task runs: their targets are checked here, before Hydra sees them
        check_override_targets([a for a in sys.argv[1:] if "=" in a and not a.startswith("-")])
    except JLInputError as err:
        print(f"{program}: error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    try:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            entry()
            return
        os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra then raises its errors instead of printing them
        try:
            entry()
        except Exception as err:
            message = composition_error_message(err, config_name) or user_error_message(err)
            if message is None:
                raise
            print(f"{program}: error: {message}", file=sys.stderr, flush=True)
            sys.exit(2)
    finally:
        gc.freeze()


def failed_job(program: str, job_dir, err: Exception) -> float:
    """A multirun job that failed: one line on stderr naming the job, a record in the sweep
    folder for its summary, and NaN returned to the sweeper (Optuna marks the trial failed)
    so that the other jobs run. A job refused as bad input leaves no folder; a job that met a
    bug keeps its folder, with the traceback in its log."""

    hydra_cfg = HydraConfig.get()
    job, overrides = str(hydra_cfg.job.num), list(hydra_cfg.overrides.task)
    disk = disk_error(err)
    message = None if disk is not None else user_error_message(err)
    if message is not None:
        shutil.rmtree(job_dir, ignore_errors=True)
    else:
        logging.getLogger("jl_lightning").exception("job %s failed", job)
        message = (
            f"writing failed ({disk.strerror})"
            if disk is not None
            else f"{type(err).__name__}: {err} (traceback in {Path(str(job_dir)) / 'train.log'})"
        )
    record_failure(hydra_cfg.sweep.dir, Path(str(job_dir)).name, overrides, message)
    print(f"{program}: error: job {job} ({' '.join(overrides)}): {message}", file=sys.stderr, flush=True)
    return math.nan


def _top_level_keys() -> frozenset:
    """Every key conf/train.yaml composes, read from the file: its own keys and the config
    groups of its defaults list (those with a default; hydra is Hydra's own). Anything else (a
    ``+key=`` override) would be ignored, so it is refused."""
    train = OmegaConf.load(Path(CONFIG_DIR) / "train.yaml")
    groups = {
        name
        for entry in train.defaults
        if isinstance(entry, DictConfig)
        for name, choice in entry.items()
        if choice is not None and name != "hydra"
    }
    return frozenset(set(train) - {"defaults"} | groups)


TOP_LEVEL = _top_level_keys()


# the config groups a run's config holds as mappings (a run folder's config.yaml is input)
GROUP_NODES = ("data", "model", "optimizer", "scheduler", "trainer", "callbacks", "logger", "paths", "baseline")


def check_run_config(saved, where: str) -> None:
    """A run folder's saved config, before anything is built from it: only jl-train's
    top-level keys, each group a mapping (or null), and only targets the project allows
    (``lightning/targets.py``); otherwise one line naming ``where`` and the key.

    Examples
    --------
    >>> check_run_config(OmegaConf.create({"seed": 0, "model": {"k": 4}}), "resume=R")
    """
    if not isinstance(saved, DictConfig):
        raise JLInputError(f"{where}: .hydra/config.yaml is not a jl-train config (a mapping of options)")
    unknown = sorted(set(saved.keys()) - TOP_LEVEL)
    if unknown:
        raise JLInputError(
            f"{where}: .hydra/config.yaml holds {', '.join(unknown)}, which jl-train does not write; "
            "not a jl-train run folder, or edited by hand"
        )
    for name in GROUP_NODES:
        node = saved.get(name)
        if node is not None and not isinstance(node, DictConfig):
            raise JLInputError(f"{where}: .hydra/config.yaml's {name} must be a mapping of options, got {node!r}")
    check_targets(saved)
