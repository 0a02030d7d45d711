"""A SLURM job that is requeued continues its own run (apps/slurm.py, the run guard).

No cluster: the tests set the variables Lightning's SLURMEnvironment reads, and put a fake
``scontrol`` on PATH that records the requeue and, as SLURM does when it requeues a running
job, sends the job SIGTERM.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from conftest import concurrently, jl_train

from jl_lightning.apps import slurm
from tests.helpers import SIGNALLED_RUN

TESTS = Path(__file__).resolve().parent
SLURM = {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "jltest", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
         "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost"}  # fmt: skip
COMMON = list(SIGNALLED_RUN)


def fake_scontrol(folder: Path) -> tuple[Path, Path]:
    """A ``scontrol`` that appends its arguments to a log and stops its caller with SIGTERM."""
    folder.mkdir()
    log = folder / "scontrol.log"
    script = folder / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nkill -TERM $PPID\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder, log


def job_env(job: str, restart: int = 0, bin_dir: Path | None = None) -> dict:
    env = {**SLURM, "SLURM_JOB_ID": job, "SLURM_RESTART_COUNT": str(restart)}
    env.update({"PYTHONPATH": str(TESTS), "JL_EXTRA_TARGETS": "kill_at."})
    if bin_dir is not None:
        env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    return env


def test_the_run_folder_is_keyed_by_the_job_and_the_command(monkeypatch):
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_NTASKS", "SLURM_JOB_NAME"):
        monkeypatch.delenv(name, raising=False)
    assert slurm.job_key() is None and slurm.run_dir("outputs/runs/now", "train", ["a=1"]) == "outputs/runs/now"
    monkeypatch.setenv("SLURM_NTASKS", "1")
    monkeypatch.setenv("SLURM_JOB_NAME", "job")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    one, two = slurm.run_dir("x", "train", ["a=1"]), slurm.run_dir("x", "train", ["a=2"])
    assert one.startswith("outputs/runs/slurm/4242/") and one.endswith("_train") and one != two
    assert one == slurm.run_dir("x", "train", ["a=1"])
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4200")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    assert slurm.job_key() == "4200_7"  # the id Lightning's requeue names
    monkeypatch.setenv("SLURM_JOB_NAME", "interactive")  # Lightning leaves SLURM alone there
    assert slurm.job_key() is None


def test_what_a_job_does_with_a_folder_an_earlier_start_made(monkeypatch, tmp_path):
    """Results of any command (jl-compare's tables too) mean finished, never started over; a
    checkpoint means resume; nothing saved means restart; another job's folder is not this one's."""
    for name, value in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "job", "SLURM_JOB_ID": "77"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    folder = tmp_path / "run"
    folder.mkdir()
    assert slurm.continuation(folder) is None  # no marker
    slurm.mark(folder)
    assert (folder / slurm.MARKER).read_text() == "77\n"
    assert slurm.continuation(folder) == "restart"
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert slurm.continuation(folder) == "resume"
    (folder / "comparison.csv").write_text("method,epsilon\n")
    assert slurm.continuation(folder) == "finished"
    monkeypatch.setenv("SLURM_JOB_ID", "78")
    assert slurm.continuation(folder) is None
    assert slurm.lock_fields() == {"slurm_job": "78", "slurm_restart": "0"}


@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGUSR1", "SIGTERM"])
def test_a_requeued_job_continues_its_own_run_bit_for_bit(tmp_path, signal_name):
    """SIGUSR1 (``--signal=USR1@90``: Lightning saves its hpc checkpoint and runs scontrol
    requeue, whose SIGTERM stops the step) or SIGTERM alone (a preemption) at step 13; the same
    command started again by SLURM (same job id, restart count 1, another node's stale lock)
    resumes in the same folder and ends with the uninterrupted run's embedding.npy bit for bit;
    a third start of the finished run exits 0 and writes nothing."""
    bin_dir, log = fake_scontrol(tmp_path / "bin")
    killed = [*COMMON, "+callbacks.kill._target_=kill_at.KillAt", "+callbacks.kill.step=13",
              f"+callbacks.kill.signal={signal_name}"]  # fmt: skip
    full, stopped = concurrently(
        lambda: jl_train(*COMMON, cwd=tmp_path, env_extra=job_env("100")),
        lambda: jl_train(*killed, cwd=tmp_path, env_extra=job_env("101", bin_dir=bin_dir)),
    )
    assert full.returncode == 0, full.stderr
    assert stopped.returncode == 143, stopped.stderr
    (full_dir,) = (tmp_path / "outputs/runs/slurm/100").iterdir()
    (run_dir,) = (tmp_path / "outputs/runs/slurm/101").iterdir()
    assert (run_dir / slurm.MARKER).read_text().strip() == "101"
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and not (run_dir / "embedding.npy").exists()
    if signal_name == "SIGUSR1":
        assert log.read_text().split() == ["requeue", "101"]
        assert (run_dir / "hpc_ckpt_1.ckpt").is_file()  # Lightning's, saved in the handler
    else:
        assert not log.exists()
    # the requeued start runs on another node: the lock its first start left is not its own
    (run_dir / ".jl_lock").write_text(
        json.dumps({"pid": 1, "host": "node-b", "slurm_job": "101", "slurm_restart": "0"})
    )
    again = jl_train(*killed, cwd=tmp_path, env_extra=job_env("101", restart=1, bin_dir=bin_dir))
    assert again.returncode == 0, again.stderr
    assert [p.name for p in (tmp_path / "outputs/runs/slurm/101").iterdir()] == [run_dir.name]
    np.testing.assert_array_equal(np.load(run_dir / "embedding.npy"), np.load(full_dir / "embedding.npy"))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 120 and not (run_dir / ".jl_lock").exists()
    assert any(p.name.startswith("resumed-") for p in (run_dir / ".hydra").iterdir())
    before = (run_dir / "summary.json").stat().st_mtime_ns
    third = jl_train(*killed, cwd=tmp_path, env_extra=job_env("101", restart=2, bin_dir=bin_dir))
    assert third.returncode == 0 and "finished" in third.stderr and third.stderr.count("\n") == 1, third.stderr
    assert (run_dir / "summary.json").stat().st_mtime_ns == before


@pytest.mark.slow
def test_a_job_requeued_before_its_first_checkpoint_starts_again(tmp_path):
    """A start killed (SIGKILL, a node failure) before its first checkpoint left its folder with
    the job's marker, its config and a dead lock: the next start of the job begins again in the
    same folder, the first start's files gone (no refusal of an occupied folder, nothing mixed)."""
    # debug=fast names its runs "debug" (task_name)
    run_dir = tmp_path / slurm.RUNS_UNDER_SLURM / "102" / f"{slurm.command_digest(COMMON)}_debug"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (run_dir / slurm.MARKER).write_text("102\n")
    (run_dir / ".jl_lock").write_text(
        json.dumps({"pid": 1, "host": "node-a", "slurm_job": "102", "slurm_restart": "0"})
    )
    (run_dir / "stale.txt").write_text("left by the first start")
    again = jl_train(*COMMON, cwd=tmp_path, env_extra=job_env("102", restart=1))
    assert again.returncode == 0, again.stderr
    assert (run_dir / "summary.json").is_file() and not (run_dir / "stale.txt").exists()
    # another job's folder is never taken over: a different job id gets its own folder
    other = jl_train(*COMMON, cwd=tmp_path, env_extra=job_env("103"))
    assert other.returncode == 0, other.stderr
    assert (tmp_path / slurm.RUNS_UNDER_SLURM / "103").is_dir()
