"""Where the configs live, and composing them outside a Hydra run (``JLEmbedding.fit``, tests)."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from omegaconf import OmegaConf

# conf/ at the repository root: the install is editable, so the checkout's configs are used
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")

# conf/hydra/default.yaml: a resumed run lives in its own folder, and keeps its .hydra/config.yaml
OmegaConf.register_new_resolver("jl_run_dir", lambda resume, fresh: str(resume) if resume else fresh, replace=True)
OmegaConf.register_new_resolver("jl_output_subdir", lambda resume, resumed: resumed if resume else ".hydra",
                                replace=True)


def compose(overrides: list[str] | tuple = (), config_name: str = "train") -> DictConfig:
    """``conf/<config_name>.yaml`` composed with ``overrides``, as the entry point would."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose(config_name=config_name, overrides=list(overrides))


def user_error_message(err: BaseException) -> str | None:
    """The one line to print for an error the user can fix, or None for a real bug.

    Unwraps what Hydra's ``instantiate`` wraps (the ``JLInputError`` raised inside a
    constructor) and names a mandatory option left unset (``???`` in the YAML).
    """
    from hydra.errors import InstantiationException
    from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

    from jl_lightning.errors import JLInputError

    seen = err
    while seen is not None:
        if isinstance(seen, (JLInputError, FileExistsError)):
            return str(seen)
        if isinstance(seen, MissingMandatoryValue):
            key = getattr(seen, "full_key", None) or "an option"
            return f"{key} is required but not set; give it on the command line, e.g. {key}=VALUE"
        seen = seen.__cause__ or seen.__context__
    if isinstance(err, InstantiationException):
        return f"the config could not be built: {str(err).splitlines()[0]}"
    if isinstance(err, OmegaConfBaseException):
        return f"the config is not valid: {str(err).splitlines()[0]}"
    return None


def refuse_and_exit(program: str, run_dir, err: Exception) -> None:
    """The entry points' error path: a user error is one line on stderr and exit status 2,
    after the run folder this run created is removed; anything else is re-raised (a bug)."""
    import sys

    from jl_lightning.io.run_folder import release_lock

    message = user_error_message(err)
    release_lock(run_dir, abandon=True)
    if message is None:
        raise err
    print(f"{program}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def stop_and_exit(program: str, run_dir, stop) -> None:
    """The entry points' path for a run stopped by a signal (``RunStopped``): one line on
    stderr saying where it stopped and how to continue, the lock released, and exit status
    128 + the signal number. A run stopped before it saved any step leaves nothing behind."""
    import signal
    import sys

    from jl_lightning.io.run_folder import release_lock
    from jl_lightning.lightning.callbacks.graceful_stop import checkpoint_path

    name = signal.Signals(stop.signum).name
    if stop.checkpoint is not None:
        where = f"at step {stop.step}" + (f" of {stop.max_steps}" if stop.max_steps else "")
        message = (f"stopped by {name} {where}; checkpoints/last.ckpt holds that step; "
                   f"continue with: jl-train resume={run_dir}")
        release_lock(run_dir)
    elif checkpoint_path(run_dir).is_file():
        message = (f"stopped by {name}; continue from its last checkpoint (checkpoints/last.ckpt) with: "
                   f"jl-train resume={run_dir}")
        release_lock(run_dir)
    else:
        message = f"stopped by {name} before any training step was saved; nothing was kept (run the command again)"
        release_lock(run_dir, abandon=True)
    print(f"{program}: {message}", file=sys.stderr, flush=True)
    sys.exit(stop.exit_code)
