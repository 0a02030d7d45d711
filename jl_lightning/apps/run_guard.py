"""A Hydra callback that gives every run a folder of its own, before Hydra writes anything.

Hydra saves ``.hydra/config.yaml`` (and opens the job log) in the run folder before the
task function starts, so a check inside ``jl-train`` itself would come too late.
``on_run_start`` and ``on_multirun_start`` run before any of that:

* a folder that holds any earlier run's files (results, ``.hydra/``, checkpoints, event
  files, a lock) is refused, unless this run resumes it (``resume=RUN_DIR``, a killed
  run: no summary.json, a last.ckpt, and no live lock), and so is a folder holding anything
  else (a user's files): a run writes only into a new or empty folder of its own;
* ``paths.output_dir`` set by hand is refused: it would send the results into another
  folder than the one checked and locked here;
* otherwise the folder is created and locked (``.jl_lock``, O_EXCL, with the pid and the
  host), so a second run into the same folder is refused at once;
* the lock is released when the run ends; a refused or failed run removes the folder it
  created (the entry points call ``release_lock(..., abandon=True)``);
* under SLURM, a folder that an earlier start of the same job made is this run's: a requeued
  job continues it (``apps/slurm.py``), on every rank.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import time
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from jl_lightning.apps import slurm
from jl_lightning.apps.sweep_summary import failures
from jl_lightning.io.loading import path_problem
from jl_lightning.io.run_folder import (
    LOCK_NAME,
    earlier_run_files,
    lock_is_stale,
    occupied,
    process_rank,
    read_lock,
    release_lock,
    take_lock,
)


def _program(config: DictConfig | None) -> str:
    job = config.hydra.job.name if config is not None and config.get("hydra") else None
    return f"jl-{job}" if job else (Path(sys.argv[0]).name or "jl")


def _refuse(message: str, config: DictConfig | None = None) -> None:
    print(f"{_program(config)}: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def data_path_problem(config: DictConfig) -> str | None:
    """Why ``data.source.path`` (when the data has one) cannot be read, or None: missing, a
    directory, or not a regular file (a pipe or a device, which would hang the reader)."""

    try:
        path = OmegaConf.select(config, "data.source.path", default=None)
    except Exception:  # an interpolation or a mandatory value: the loader says what is wrong
        return None
    if path is None or not str(path).strip():
        return None  # unset or empty: the loader says what is wrong
    return path_problem(path)


def resumable_problem(run_dir: Path) -> str | None:
    """Why ``run_dir`` cannot be resumed, or None."""
    if not (run_dir / ".hydra" / "config.yaml").is_file():
        return f"resume={run_dir}: not a jl-train run folder (no .hydra/config.yaml)"
    if (run_dir / "summary.json").exists():
        return f"resume={run_dir}: that run finished (summary.json exists); there is nothing to resume"
    if (run_dir / "embedding.npy").exists():
        return (
            f"resume={run_dir}: that run wrote its matrix (embedding.npy) but has no summary.json (removed, or "
            "cut just before it): there is nothing to resume; its matrix is embedding.npy"
        )
    if not (run_dir / "checkpoints" / "last.ckpt").is_file():
        return f"resume={run_dir}: no checkpoints/last.ckpt to resume from (the run died before its first checkpoint)"
    lock = read_lock(run_dir)
    if (run_dir / LOCK_NAME).exists() and not lock_is_stale(lock):
        return f"resume={run_dir}: a live run (pid {lock.get('pid')}) is still writing there"
    return None


# how long a rank other than 0 waits for rank 0 to lock the run folder
RANK_0_WAIT_S = 120.0

# conf/paths/default.yaml: every result goes where Hydra put this run
OUTPUT_DIR_DEFAULT = "${hydra:runtime.output_dir}"


def raw_output_dir(config: DictConfig) -> str | None:
    """``paths.output_dir`` as written (an interpolation left as its text)."""
    paths = OmegaConf.to_container(config.get("paths") or {}, resolve=False)
    return paths.get("output_dir") if isinstance(paths, dict) else None


def folder_entries(folder: Path, show: int = 3) -> list[str]:
    """The first names in ``folder`` (none if it does not exist or is empty)."""
    try:
        names = sorted(entry.name for entry in folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return names[:show] + ([f"and {len(names) - show} more"] if len(names) > show else [])


def _checked(check, config: DictConfig, folder) -> None:
    """``check(config)``, with an ``OSError`` (a name longer than the file system takes, a
    permission) refused in one line: Hydra would only warn about it and go on."""
    try:
        check(config)
    except OSError as err:
        where = str(err.filename if err.filename is not None else folder)
        _refuse(f"cannot use {where[:80]}{'…' if len(where) > 80 else ''}: {err.strerror}", config)


class RefuseOccupiedRunDir(Callback):
    """The checks above, by the process of rank 0 only: the other processes of a distributed
    run (started by Lightning's DDP launcher into rank 0's folder, or by SLURM) write nothing."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        if not config.get("resume"):
            _checked(self._continue_slurm_job, config, config.hydra.run.dir)
        rank = process_rank()
        if rank > 0:
            self._join_rank_0(config, rank)
            return
        _checked(self._check, config, config.hydra.run.dir)

    @staticmethod
    def _join_rank_0(config: DictConfig, rank: int) -> None:
        """Another rank started by a scheduler (srun's tasks, one process per node), not by
        Lightning: wait until rank 0 has checked and locked the folder (else this rank's Hydra
        files would make rank 0 refuse it as occupied), then keep this rank's Hydra files apart:
        no config copy and its own log, as Lightning's launcher does for the ranks it starts."""
        run_dir = Path(str(config.hydra.run.dir))
        deadline = time.monotonic() + RANK_0_WAIT_S
        while not (run_dir / LOCK_NAME).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        with read_write(config), open_dict(config):
            config.hydra.output_subdir = None
            if not str(config.hydra.job.name).endswith(f"_rank_{rank}") and "_ddp_process_" not in str(
                config.hydra.job.name
            ):
                config.hydra.job.name = f"{config.hydra.job.name}_rank_{rank}"

    def _continue_slurm_job(self, config: DictConfig) -> None:
        """A SLURM job started again (requeued, preempted) in the folder an earlier start of it
        made: exit 0 if that run finished, continue it from its checkpoint (as ``resume=``),
        or start it again when it died before its first checkpoint. Every rank decides the
        same from the folder; only rank 0 changes it."""
        run_dir = Path(str(config.hydra.run.dir))
        action = slurm.continuation(run_dir)
        if action is None:
            return
        writer = process_rank() == 0
        lock = read_lock(run_dir)
        if lock is not None and writer:
            if lock.get("slurm_restart") == slurm.restart_count() and not lock_is_stale(lock):
                _refuse(f"{run_dir} is in use by another run of this SLURM job (pid {lock.get('pid')})", config)
            # an earlier start of this job: SLURM runs one start of a job at a time
            (run_dir / LOCK_NAME).unlink(missing_ok=True)
        if action == "finished":
            if writer:
                print(
                    f"{_program(config)}: {run_dir} is this SLURM job's run and it finished "
                    f"({', '.join(occupied(run_dir))}); nothing to do",
                    file=sys.stderr,
                    flush=True,
                )
            sys.exit(0)
        if action == "restart":
            if writer:  # this job's own folder, from a start that saved no step: begin again
                shutil.rmtree(run_dir)
            return
        with read_write(config), open_dict(config):
            config.resume = str(run_dir)

    def _check(self, config: DictConfig) -> None:
        run_dir = Path(str(config.hydra.run.dir))
        resume = config.get("resume")
        if resume:
            problem = resumable_problem(Path(str(resume)))
            if problem:
                _refuse(problem, config)
            if Path(str(resume)).resolve() != run_dir.resolve():
                _refuse(f"resume={resume} continues a run in its own folder; leave hydra.run.dir unset", config)
        else:
            problem = data_path_problem(config)
            if problem:  # before the folder exists: a run that cannot read its data creates nothing
                _refuse(problem, config)
            found = earlier_run_files(run_dir)
            if found:
                extra = ""
                if not occupied(run_dir) and (run_dir / "checkpoints").exists():
                    extra = f" To continue that killed run: jl-train resume={run_dir}"
                _refuse(
                    f"{run_dir} holds an earlier run's files ({', '.join(found)}); refusing to overwrite "
                    f"them or write beside them (nothing was written). Choose another hydra.run.dir.{extra}",
                    config,
                )
            foreign = folder_entries(run_dir)
            if foreign:  # a run writes only into a folder of its own: not beside a user's files
                _refuse(
                    f"hydra.run.dir={run_dir} is not empty ({', '.join(foreign)}); a run writes only into a "
                    "new or empty folder of its own (nothing was written). Choose another hydra.run.dir.",
                    config,
                )
        output_dir = raw_output_dir(config)
        if output_dir != OUTPUT_DIR_DEFAULT:
            _refuse(
                f"paths.output_dir={output_dir} is the folder Hydra made for this run and is not set by hand "
                "(it would write into another folder); choose the run folder with hydra.run.dir",
                config,
            )
        try:
            take_lock(run_dir, takeover=bool(resume), extra=slurm.lock_fields())
            slurm.mark(run_dir)
        except FileExistsError as err:
            _refuse(str(err), config)
        except OSError as err:  # under a file, read-only, /proc, a full disk: nothing was created
            _refuse(f"hydra.run.dir={run_dir}: cannot create the run folder there ({err.strerror or err})", config)

    def on_run_end(self, config: DictConfig, **kwargs) -> None:
        if process_rank() > 0:
            return
        release_lock(Path(str(config.hydra.run.dir)))

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        _checked(self._check_sweep, config, config.hydra.sweep.dir)

    def _check_sweep(self, config: DictConfig) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if raw_output_dir(config) != OUTPUT_DIR_DEFAULT:
            _refuse(
                f"paths.output_dir={raw_output_dir(config)} is the folder Hydra makes for each job and is not set "
                "by hand; choose the sweep folder with hydra.sweep.dir",
                config,
            )
        if sweep_dir.is_dir():
            for job_dir in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
                found = earlier_run_files(job_dir)
                if found:
                    _refuse(
                        f"{job_dir} holds an earlier sweep's files ({', '.join(found)}); refusing to "
                        "overwrite them or write beside them (nothing was written). Choose another "
                        "hydra.sweep.dir.",
                        config,
                    )
        try:
            take_lock(sweep_dir)
            # released whatever ends the sweep (a job's traceback, a signal that exits): the
            # lock names this process, so a later release by on_multirun_end is a no-op
            atexit.register(release_lock, sweep_dir)
        except FileExistsError as err:
            _refuse(str(err), config)
        except OSError as err:
            _refuse(
                f"hydra.sweep.dir={sweep_dir}: cannot create the sweep folder there ({err.strerror or err})", config
            )

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:

        sweep_dir = Path(str(config.hydra.sweep.dir))
        release_lock(sweep_dir)
        failed = failures(sweep_dir)
        if failed:  # each said why on stderr; the exit status tells the scheduler
            sys.exit(2)
