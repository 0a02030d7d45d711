"""A SLURM job that is requeued (preempted, or requeued by Lightning before its time limit)
continues its own run instead of starting a new one.

Lightning does the SLURM side: with ``SLURM_JOB_ID`` set it runs under its
``SLURMEnvironment``, whose auto-requeue handles the signal asked for with
``#SBATCH --signal=USR1@90`` (it saves ``hpc_ckpt_<n>.ckpt`` and calls ``scontrol requeue``);
SLURM then stops the job with SIGTERM, which the run's ``GracefulStop`` turns into
``checkpoints/last.ckpt`` at the end of the step. A preemption sends SIGTERM alone. This module
does the folder side, so that the job started again finds that checkpoint:

* under SLURM (Lightning's ``SLURMEnvironment.detect()``: a batch or ``srun`` job, not an
  interactive shell) a run's folder is keyed by the job, not by the clock:
  ``outputs/runs/slurm/<job>/<command>_<task>``, where ``<job>`` is the id Lightning requeues
  (``SLURM_JOB_ID``, or ``SLURM_ARRAY_JOB_ID_SLURM_ARRAY_TASK_ID`` for an array task) and
  ``<command>`` the first 8 hex digits of the sha256 of the command line's overrides: two
  commands of one job get two folders, the same command started again finds its own, and every
  rank of a multi-task job (all started by ``srun`` with the same command) agrees on it;
* the folder records the job (:data:`MARKER`); when a run starts in a folder that an earlier
  start of the same job made (:func:`continuation`), the run guard continues it: from
  ``checkpoints/last.ckpt`` as ``resume=`` would (the command's own config, bit for bit), or
  it exits 0 at once when that run had finished, or it starts again from step 0 when the
  earlier start died before its first checkpoint. (The jobs of a multirun never pass the
  guard's ``on_run_start``: a requeued sweep job starts over.)
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from jl_lightning.io.run_folder import occupied
from jl_lightning.lightning.callbacks.graceful_stop import checkpoint_path

# written into a run folder made under SLURM: the job it belongs to
MARKER = ".jl_slurm_job"
RUNS_UNDER_SLURM = "outputs/runs/slurm"


def job_key() -> str | None:
    """The id of this SLURM job as Lightning requeues it, or None outside a SLURM job (and in an
    interactive one, where Lightning does not use SLURM either)."""
    # lazy: Lightning's environment detection is the one place that decides what a SLURM job is
    from lightning.fabric.plugins.environments import SLURMEnvironment  # noqa: PLC0415

    if not SLURMEnvironment.detect():
        return None
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}" if array_job else os.environ.get("SLURM_JOB_ID")
    if not job or not all(c.isdigit() or c == "_" for c in job):
        return None
    return job


def restart_count() -> str:
    """How many times SLURM has requeued this job (``SLURM_RESTART_COUNT``; 0 at the first start)."""
    return str(os.environ.get("SLURM_RESTART_COUNT", "0"))


def command_digest(overrides) -> str:
    """The first 8 hex digits of the sha256 of a command line's overrides, in their order."""
    text = "\n".join(str(o) for o in (overrides or ()))
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def run_dir(fresh: str, task_name: str, overrides) -> str:
    """The run folder of a run started without ``resume=``: keyed by the job under SLURM,
    ``fresh`` (the clock's folder) otherwise."""
    job = job_key()
    if job is None:
        return fresh
    return f"{RUNS_UNDER_SLURM}/{job}/{command_digest(overrides)}_{task_name}"


def lock_fields() -> dict:
    """What a run folder's lock records of the SLURM job holding it ({} outside SLURM)."""
    job = job_key()
    return {} if job is None else {"slurm_job": job, "slurm_restart": restart_count()}


def mark(folder: Path) -> None:
    """Record in ``folder`` that this SLURM job made it (nothing outside SLURM)."""
    job = job_key()
    if job is not None:
        (Path(folder) / MARKER).write_text(job + "\n")


def continuation(folder: Path) -> str | None:
    """What this SLURM job does with ``folder`` that an earlier start of the same job made:
    ``"finished"`` (it holds results: jl-train's, jl-compare's), ``"resume"`` (a checkpoint
    that ``resume=`` continues from), ``"restart"`` (it died before its first checkpoint).
    None when ``folder`` is not this job's (outside SLURM, no marker, another job's)."""
    job = job_key()
    marker = Path(folder) / MARKER
    try:
        if job is None or marker.read_text().strip() != job:
            return None
    except (OSError, UnicodeDecodeError):
        return None
    if occupied(folder):  # jl-train's summary.json, jl-compare's tables: never started over
        return "finished"
    if checkpoint_path(folder).is_file():
        return "resume"
    return "restart"
