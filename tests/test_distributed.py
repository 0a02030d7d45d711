"""Several processes, one model: the sharded loss, the sharded exact pass, and trainer=ddp (gloo, CPU)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import jl_train

from jl_lightning.core.sharding import Shard
from jl_lightning.metrics.distortion import evaluate, merge_reports
from tests.helpers import job_dirs, pair_deviations


def free_port() -> int:
    """A port for MASTER_PORT that no other socket takes between this choice and node 0's bind:
    below the kernel's ephemeral range, which it hands to every socket bound to port 0 and to
    every outgoing connection (a port of that range, free when chosen, was taken in between by
    the ranks' own connections now and then), and free now."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = np.random.default_rng()
    for port in rng.permutation(np.arange(max(1024, low - 8000), low)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", int(port)))
            except OSError:
                continue
            return int(port)
    raise RuntimeError("no free port below the ephemeral range")


# --------------------------------------------------------------- the loss
@pytest.fixture(scope="module")
def two_rank_results(tmp_path_factory):
    import distributed_helpers
    import torch.multiprocessing as mp

    out = tmp_path_factory.mktemp("ranks")
    mp.spawn(distributed_helpers.rank_main, args=(2, str(out)), nprocs=2, join=True)
    return torch.load(out / "results.pt")


@pytest.mark.parametrize(
    "case", ["norms_hard_span", "norms_smooth_full", "pairs_hard", "pairs_smooth", "pairs_hard_deterministic"]
)
def test_two_ranks_give_the_single_process_loss_and_gradient(two_rank_results, case):
    import distributed_helpers

    single = distributed_helpers.loss_and_gradients(case)
    ranks = two_rank_results[case]
    assert ranks["loss"] == pytest.approx(single["loss"], rel=1e-12)
    torch.testing.assert_close(ranks["hard"], single["hard"], rtol=1e-12, atol=0)
    # DDP's average of the ranks' gradients is the single-process gradient
    torch.testing.assert_close(ranks["grad_mean"], single["grad_mean"], rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(ranks["grad_theta"], single["grad_theta"], rtol=1e-10, atol=1e-13)
    assert float(single["grad_mean"].abs().max()) > 0


@pytest.mark.parametrize("init_mean", ["zeros", "gaussian"])
def test_the_shared_refresh_keeps_the_single_process_pairs(two_rank_results, init_mean):
    """The active set's first exact pass, shared by two ranks, keeps the pairs one process
    keeps, in the same order; at M = 0, where every pair ties, too."""
    import distributed_helpers

    i1, j1 = distributed_helpers.refreshed_hard_pairs(init_mean)
    i2, j2 = two_rank_results[f"refresh_{init_mean}"]
    assert len(i1) == 700
    assert torch.equal(i1, i2) and torch.equal(j1, j2)


def test_the_worst_pair_sits_on_the_second_rank():
    """The deterministic case's worst pair is rank 1's (every other pair of the hard list
    goes to rank 0 first), so the gradient test above reaches M only through rank 1."""
    import distributed_helpers

    n = distributed_helpers.CASES["pairs_hard_deterministic"][2]
    gen = torch.Generator().manual_seed(7)
    points = torch.randn(n, 10, generator=gen, dtype=torch.float64)
    mean = torch.randn(distributed_helpers.K, 10, generator=gen, dtype=torch.float64)
    i, j = distributed_helpers.hard_pairs(n, mean, points)
    X = points - points.mean(0)
    dev = ((X[i] - X[j]) @ mean.T).pow(2).sum(1) / distributed_helpers.K / (X[i] - X[j]).pow(2).sum(1) - 1
    assert int(dev.abs().argmax()) == 1  # position 1: Shard(1, 2).take gives it to rank 1
    assert Shard(1, 2).take(torch.arange(4)).tolist() == [1, 3]


# ------------------------------------------------------- the exact pass
def brute_force(A, X, mode, other=None):
    """|ratio - 1| of every point, or of every pair (helpers.pair_deviations)."""
    if mode == "norms":
        return np.abs(((X @ A.T) ** 2).sum(1) / (X**2).sum(1) - 1)
    return pair_deviations(A, X, other, zero_rtol=1e-12)


@pytest.mark.parametrize("mode", ["norms", "pairs"])
@pytest.mark.parametrize("screen", [False, True])
@pytest.mark.parametrize("world", [2, 3])
def test_sharded_pass_merges_to_the_whole_pass(mode, screen, world):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 12))
    X[7] = X[40]  # a duplicate pair, left out on whichever rank meets it
    V = rng.normal(size=(25, 12))
    A = rng.normal(size=(5, 12)) / np.sqrt(5)
    kwargs = dict(worst=30, heldout=V, screen=screen, memory_budget=2**16)  # many small tiles
    whole = evaluate(A, X, mode, **kwargs)
    parts = [evaluate(A, X, mode, shard=Shard(r, world), **kwargs) for r in range(world)]
    merged = merge_reports(parts)
    dev = brute_force(A, X, mode)
    assert merged.epsilon == pytest.approx(dev.max(), rel=1e-12)
    assert merged.epsilon == whole.epsilon and merged.worst_index == whole.worst_index
    assert merged.count == whole.count == len(dev)
    assert merged.zero_distance_pairs == whole.zero_distance_pairs == (1 if mode == "pairs" else 0)
    np.testing.assert_allclose(merged.worst[-1], np.sort(dev)[::-1][:30], rtol=1e-12)
    assert merged.min_ratio == whole.min_ratio and merged.max_ratio == whole.max_ratio
    if not screen:
        assert merged.mean_abs == pytest.approx(dev.mean(), rel=1e-10)
    assert np.isnan(merged.median_abs)  # a sharded pass has no quantiles
    if mode == "pairs":
        assert sum(p.count for p in parts) == merged.count and min(p.count for p in parts) > 0
    for name, report in whole.heldout.items():
        assert merged.heldout[name].epsilon == pytest.approx(report.epsilon, rel=1e-12)
    cross = brute_force(A, X, "pairs", other=V)
    assert merged.heldout["cross_pairs"].epsilon == pytest.approx(cross.max(), rel=1e-12)


def test_merging_refuses_all_zero_pairs():
    X = np.ones((6, 3))
    parts = [evaluate(np.eye(2, 3), X, "pairs", shard=Shard(r, 2), screen=False) for r in range(2)]
    with pytest.raises(ValueError, match="distance zero"):
        merge_reports(parts)


# ------------------------------------------------------------ trainer=ddp
DDP_RUNS = {
    "norms": ["data.source.n=40", "data.source.d=80", "model.k=10", "trainer.max_steps=300", "optimizer.lr=0.05"],
    # 1,035 training points: three pair tiles, so both ranks share every exact pass. A Gaussian
    # start: at M = 0 every pair ties at distortion 1, and which of them a pass keeps as the
    # worst is the sorting's choice, not the same with 1 and 2 processes (docs/distributed.md)
    "pairs": [
        "data.source.n=1150",
        "data.source.d=20",
        "model.k=6",
        "model.mode=pairs",
        "model.init_mean=gaussian",
        "model.loss.active_hard=512",
        "model.loss.active_random=1000",
        "model.loss.active_refresh=50",
        "data.val_fraction=0.1",
        "trainer.max_steps=200",
        "optimizer.lr=0.01",
    ],
}
COMMON = ["baseline.draws=5", "log_every=25", "threads=1", "logger=csv", "model.init_variance=0.2"]


@pytest.mark.parametrize("mode", ["norms", "pairs"])
def test_two_gloo_processes_learn_the_one_process_matrix(tmp_path, mode):
    """jl-train trainer=ddp (2 CPU processes over gloo) against the same run in one process:
    the same matrix to 1e-5 relative and the same exact epsilon; rank 0 alone writes."""
    from conftest import make_cfg

    from jl_lightning.apps.train import train

    args = DDP_RUNS[mode] + COMMON
    one, objects = train(make_cfg(tmp_path / "one", args))
    points = objects["datamodule"].points
    proc = jl_train(*args, "trainer=ddp", f"hydra.run.dir={tmp_path / 'two'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("| run folder ") == 1  # one final line, from rank 0
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    A1, A2 = np.load(tmp_path / "one" / "embedding.npy"), np.load(tmp_path / "two" / "embedding.npy")
    assert np.abs(A2 - A1).max() <= 1e-5 * np.abs(A1).max()
    assert two["final_distortion"] == pytest.approx(one["final_distortion"], abs=1e-5)
    assert two["best_step"] == one["best_step"] and two["switch_step"] == one["switch_step"]
    # the certificate of the exported matrix is exact: recomputed here from the file
    assert two["best_distortion"] == pytest.approx(evaluate(A2, points, mode).epsilon, rel=1e-9)
    if mode == "pairs":
        for name in ("pairs", "cross_pairs"):
            assert two["heldout"][name]["epsilon"] == pytest.approx(one["heldout"][name]["epsilon"], abs=1e-5)
    assert two["references"]["gaussian"]["best"] == one["references"]["gaussian"]["best"]
    # rank 1 ran in rank 0's folder and wrote only its log there
    assert (tmp_path / "two" / "train_ddp_process_1.log").is_file()
    assert not list((tmp_path / "two").glob("*process_1*/summary.json"))


@pytest.mark.slow
def test_two_nodes_meet_through_the_schedulers_environment_and_learn_the_one_process_matrix(tmp_path):
    """trainer=ddp trainer.num_nodes=2 trainer.devices=1: two jl-train processes started apart,
    as a scheduler starts one per node, that know of each other only through NODE_RANK,
    MASTER_ADDR, MASTER_PORT and WORLD_SIZE (Lightning's general-purpose cluster). They give the
    one-process matrix within the two-process test's tolerance; node 0 alone writes."""
    from conftest import concurrently, make_cfg

    from jl_lightning.apps.train import train

    args = DDP_RUNS["pairs"] + COMMON
    one, _ = train(make_cfg(tmp_path / "one", args))
    run_dir = tmp_path / "two_nodes"
    port = str(free_port())

    def node(rank: int):
        env = {"NODE_RANK": str(rank), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port, "WORLD_SIZE": "2"}
        return jl_train(
            *args, "trainer=ddp", "trainer.num_nodes=2", "trainer.devices=1", "trainer.accelerator=cpu",
            f"hydra.run.dir={run_dir}", cwd=tmp_path, env_extra=env,
        )  # fmt: skip

    def node_0_late():
        # node 1 first, as a scheduler may start it: it waits for node 0's guard and lock
        # instead of writing Hydra's files into the folder node 0 then refuses as occupied
        time.sleep(4)
        return node(0)

    first, second = concurrently(node_0_late, lambda: node(1))
    assert not (run_dir / ".hydra" / "resumed").exists() and (run_dir / "train_rank_1.log").is_file()
    assert first.returncode == 0, first.stderr[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    assert first.stdout.count("| run folder ") == 1 and "| run folder " not in second.stdout
    two = json.loads((run_dir / "summary.json").read_text())
    A1, A2 = np.load(tmp_path / "one" / "embedding.npy"), np.load(run_dir / "embedding.npy")
    assert np.abs(A2 - A1).max() <= 1e-5 * np.abs(A1).max()
    assert two["final_distortion"] == pytest.approx(one["final_distortion"], abs=1e-5)
    assert two["best_step"] == one["best_step"] and two["switch_step"] == one["switch_step"]


def test_ddp_inside_a_plain_multirun_is_refused_in_one_line(tmp_path):
    proc = jl_train(
        "-m", "debug=fast", "trainer=ddp", "model.k=4,5", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    # one line per job, each refused before anything ran (the sweep summary lists both)
    assert len(lines) == 2 and all("cannot run inside a multirun" in line for line in lines), proc.stderr
    assert [line.split(" (")[0] for line in lines] == ["jl-train: error: job 0", "jl-train: error: job 1"]
    assert "Traceback" not in proc.stderr
    sweep = tmp_path / "sweep"
    assert job_dirs(sweep, 0) == job_dirs(sweep, 1) == [] and not (sweep / ".jl_lock").exists()


@pytest.mark.parametrize(
    "env, rank",
    [
        ({}, 0),
        ({"RANK": "3", "NODE_RANK": "0"}, 3),
        ({"NODE_RANK": "0", "LOCAL_RANK": "0"}, 0),
        ({"NODE_RANK": "1"}, 1),  # a scheduler's second node, before Lightning sets RANK
        ({"GROUP_RANK": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}, 9),
        ({"LOCAL_RANK": "1"}, 1),  # Lightning's launcher inside one node
        ({"SLURM_PROCID": "5"}, 5),
    ],
)
def test_only_the_first_process_of_the_first_node_is_rank_0(monkeypatch, env, rank):
    from jl_lightning.io.run_folder import process_rank

    for name in (
        "RANK",
        "SLURM_PROCID",
        "JSM_NAMESPACE_RANK",
        "LOCAL_RANK",
        "NODE_RANK",
        "GROUP_RANK",
        "LOCAL_WORLD_SIZE",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert process_rank() == rank
