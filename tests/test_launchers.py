"""Hydra launchers: parallel jobs on one machine (joblib) and a SLURM cluster (submitit)."""

from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from jl_lightning.apps.config import CONFIG_DIR
from tests.helpers import job_dir


def launcher(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides), return_hydra_config=True).hydra.launcher


def test_slurm_configs_compose_with_the_usual_fields():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    plain = launcher(
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.gpus_per_node=2",
        "hydra.launcher.timeout_min=30",
        "hydra.launcher.mem_gb=16",
    )
    assert plain._target_.endswith("SlurmLauncher")
    assert (plain.partition, plain.gpus_per_node, plain.timeout_min, plain.mem_gb) == ("gpu", 2, 30, 16)
    ours = launcher("hydra/launcher=slurm_gpu", "hydra.launcher.partition=a100")
    assert ours._target_.endswith("SlurmLauncher")
    assert (ours.partition, ours.nodes, ours.tasks_per_node, ours.gpus_per_node, ours.timeout_min, ours.mem_gb) == (
        "a100",
        1,
        1,
        1,
        120,
        64,
    )
    assert launcher("hydra/launcher=slurm_gpu").partition is None  # the cluster's default partition


def test_the_slurm_layout_is_the_trainers_one_task_per_device():
    """A 2-node x 8-GPU DDP job: SLURM gets 2 nodes, 8 tasks and 8 GPUs on each, as Lightning's
    SLURM support needs (one task per device, started by srun), from the trainer's own fields."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    ours = launcher(
        "hydra/launcher=slurm_gpu",
        "trainer=ddp",
        "trainer.accelerator=gpu",
        "trainer.num_nodes=2",
        "trainer.devices=8",
    )
    assert (ours.nodes, ours.tasks_per_node, ours.gpus_per_node) == (2, 8, 8)
    one = launcher("hydra/launcher=slurm_gpu", "trainer=gpu")
    assert (one.nodes, one.tasks_per_node, one.gpus_per_node) == (1, 1, 1)


@pytest.mark.slow
@pytest.mark.parametrize("chosen, target", [("joblib", "JoblibLauncher"), ("submitit_local", "LocalLauncher")])
def test_a_two_job_multirun_through_a_launcher(tmp_path, chosen, target):
    """joblib runs the jobs in parallel worker processes; submitit_local runs them through
    submitit's pickled-job path, the one SLURM uses, on this machine."""
    pytest.importorskip(f"hydra_plugins.hydra_{chosen.split('_')[0]}_launcher")
    from conftest import jl_train

    sweep = tmp_path / "sweep"
    extra = ["hydra.launcher.n_jobs=2"] if chosen == "joblib" else []
    proc = jl_train(
        "-m", f"hydra/launcher={chosen}", *extra, "debug=fast", "model.k=2,3", f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert OmegaConf.load(sweep / "multirun.yaml").hydra.launcher._target_.endswith(target)
    for job, k in ((0, 2), (1, 3)):
        assert json.loads((job_dir(sweep, job) / "summary.json").read_text())["k"] == k
    table = json.loads((sweep / "sweep_summary.json").read_text())
    assert [row["job"] for row in table["jobs"]] == ["0_model.k=2", "1_model.k=3"]
    # 20 steps: neither job's sigma^2 reached 0, so neither is marked best
    assert [row["converged"] for row in table["jobs"]] == [False, False] and table["best"] is None
