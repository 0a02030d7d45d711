"""The real ``jl-train`` entry, run as a user runs it (subprocess), on a small config."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import jl_train

from jl_lightning.apps.train import train
from jl_lightning.metrics import evaluate
from tests.helpers import job_dir

SMALL = [
    "data.source.n=40",
    "data.source.d=80",
    "model.k=10",
    "trainer.max_steps=600",
    "baseline.draws=50",
    "log_every=20",
    "callbacks.model_checkpoint.every_n_train_steps=100",
]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("e2e")
    run_dir = cwd / "run"
    proc = jl_train(*SMALL, f"hydra.run.dir={run_dir}", cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd, run_dir, proc


def test_learns_far_below_the_gaussian_baseline(finished_run):
    _, run_dir, _ = finished_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final_distortion"] < summary["baseline_gaussian"]["mean"] / 4
    # the exported matrix is the best one evaluated: its step and epsilon are the history's minimum
    steps, _, eps = zip(*summary["distortion_history"])
    assert summary["best_distortion"] == min(eps) and summary["best_step"] == steps[eps.index(min(eps))]
    assert summary["steps"] == 600 and summary["seed"] == 0
    assert summary["baseline_gaussian"]["draws"] == 50
    for key in ("switch_step", "wall_seconds", "sigma2_crossings", "best_step"):
        assert key in summary


def test_run_folder_is_complete(finished_run):
    _, run_dir, proc = finished_run
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in ckpts and any(name.startswith("best-step") for name in ckpts)
    embedding = np.load(run_dir / "embedding.npy")
    assert embedding.shape == (10, 80) and embedding.dtype == np.float64
    # the exported matrix has the distortion the summary reports, on the same data
    from jl_lightning.io.sources import GaussianPoints
    from jl_lightning.io.validation import validate_points

    points = validate_points(GaussianPoints(n=40, d=80, seed=0).load(), "synthetic")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert evaluate(embedding, points, "norms").epsilon == pytest.approx(summary["best_distortion"], rel=1e-9)
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("[jl] final deterministic distortion") and "Gaussian N(0,1/k) baseline" in last


def test_references_in_summary_and_as_flat_tensorboard_lines(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dir, _ = finished_run
    summary = json.loads((run_dir / "summary.json").read_text())
    refs = summary["references"]
    assert set(refs) == {"gaussian", "sparse", "srht", "pca"}
    # the Gaussian reference agrees with an independent Monte Carlo of the same quantity: the
    # max over the 40 unit points of |‖Ax‖² − 1| for A ~ N(0, 1/k), drawn here with numpy
    X = np.random.default_rng(0).standard_normal((40, 80))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    draws = np.random.default_rng(123).standard_normal((4000, 10, 80)) / np.sqrt(10)
    worst = np.abs((np.einsum("skd,nd->snk", draws, X) ** 2).sum(-1) - 1).max(-1)
    spread = worst.std() / np.sqrt(50)  # of a mean of 50 draws
    assert abs(refs["gaussian"]["mean"] - worst.mean()) < 4 * spread
    assert np.quantile(worst, 0.001) < refs["gaussian"]["best"] < worst.mean()
    assert summary["baseline_gaussian"]["mean"] == refs["gaussian"]["mean"]
    for method in ("gaussian", "sparse", "srht"):
        assert refs[method]["draws"] == 50 and refs[method]["best"] <= refs[method]["mean"]
    assert refs["pca"]["epsilon_scaled"] <= refs["pca"]["epsilon"]
    events = EventAccumulator(str(next((run_dir / "tensorboard").glob("events.out.tfevents.*"))))
    events.Reload()
    tags = events.Tags()["scalars"]
    for tag, value in (
        ("reference/gaussian_mean", refs["gaussian"]["mean"]),
        ("reference/sparse_best", refs["sparse"]["best"]),
        ("reference/srht_best", refs["srht"]["best"]),
        ("reference/pca_scaled", refs["pca"]["epsilon_scaled"]),
    ):
        assert tag in tags
        points = events.Scalars(tag)
        assert [p.step for p in points] == [0, 600]  # a flat line over the whole run
        assert all(p.value == pytest.approx(value, rel=1e-6) for p in points)


def test_refuses_to_overwrite_an_earlier_run(finished_run):
    cwd, run_dir, _ = finished_run
    kept = [run_dir / name for name in ("embedding.npy", "summary.json", "train.log")] + sorted(
        (run_dir / ".hydra").iterdir()
    )
    before = [path.read_bytes() for path in kept]
    proc = jl_train(*SMALL, "seed=1", f"hydra.run.dir={run_dir}", cwd=cwd)
    assert proc.returncode == 2
    assert "refusing to overwrite" in proc.stderr
    assert "Traceback" not in proc.stderr
    # nothing of the earlier run changed: not its results, not Hydra's saved config, not its log
    assert [path.read_bytes() for path in kept] == before


def test_a_multirun_refuses_an_occupied_sweep_folder(tmp_path):
    sweep = tmp_path / "sweep"
    job = sweep / "0_model.k=2"  # job 0's folder (conf/hydra/default.yaml), already holding a run
    job.mkdir(parents=True)
    (job / "summary.json").write_text("{}")
    proc = jl_train("-m", "debug=fast", "model.k=2,3", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 2 and "refusing to overwrite" in proc.stderr
    assert sorted(p.name for p in job.iterdir()) == ["summary.json"]


def test_bad_input_is_one_clear_line(tmp_path):
    proc = jl_train("data=file", "data.source.path=missing.npy", cwd=tmp_path)
    assert proc.returncode == 2
    assert "jl-train: error: data file not found: missing.npy" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_k_out_of_range_is_one_clear_line(tmp_path):
    proc = jl_train(*SMALL, "model.k=0", cwd=tmp_path)
    assert proc.returncode == 2
    assert "model.k must be a positive integer, got 0" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_two_job_multirun_and_its_curve_against_k(tmp_path):
    sweep = tmp_path / "sweep"
    proc = jl_train(
        "-m", "model.k=4,6", *SMALL[:2], *SMALL[3:], "data.val_fraction=0.25", f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = sorted(p.name for p in sweep.iterdir() if p.is_dir())  # <job>_<its overrides, sorted by key>
    assert [name[:2] for name in names] == ["0_", "1_"] and "model.k=4" in names[0] and "model.k=6" in names[1]
    for job, k in ((0, 4), (1, 6)):
        folder = job_dir(sweep, job)
        assert np.load(folder / "embedding.npy").shape == (k, 80)
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["k"] == k
        assert (folder / ".hydra" / "overrides.yaml").is_file()
        assert list((folder / "tensorboard").glob("events.out.tfevents.*"))
    table = (sweep / "sweep_summary.md").read_text()  # the sweep's own table, best job marked
    assert "model.k=4" in table and "model.k=6" in table and "\nbest: job " in table
    assert json.loads((sweep / "sweep_summary.json").read_text())["best"]["job"] in names
    assert (sweep / "sweep_summary.png").read_bytes()[:4] == b"\x89PNG"  # epsilon against model.k

    # jl-compare compare.sweep: each run beside the references at its k, checked by hand
    import csv

    from jl_lightning.apps.config import compose
    from jl_lightning.lightning.fit import build_datamodule

    out = tmp_path / "curve"
    proc = jl_compare(
        f"compare.sweep={sweep}",
        "compare.methods=[gaussian,pca]",
        "compare.draws=3",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {(int(r["k"]), r["method"]): r for r in csv.DictReader((out / "curve.csv").open())}
    assert set(records) == {(k, m) for k in (4, 6) for m in ("learned (jl-train)", "gaussian", "pca (best scale)")}
    data = build_datamodule(compose([*SMALL[:2], "data.val_fraction=0.25"]).data)
    X, held = np.asarray(data.points), np.asarray(data.val_points)

    def norms_eps(A, P):
        return np.abs(((P @ A.T) ** 2).sum(1) / (P**2).sum(1) - 1).max()

    for job, k in ((0, 4), (1, 6)):
        A = np.load(job_dir(sweep, job) / "embedding.npy")
        assert float(records[(k, "learned (jl-train)")]["epsilon"]) == pytest.approx(norms_eps(A, X), rel=1e-9)
        assert float(records[(k, "learned (jl-train)")]["heldout_points_distortion"]) == pytest.approx(
            norms_eps(A, held), rel=1e-9
        )
        top = np.linalg.svd(X - X.mean(0))[2][:k]  # PCA with its best single scale, by hand
        ratios = ((X @ top.T) ** 2).sum(1) / (X**2).sum(1)
        assert float(records[(k, "pca (best scale)")]["epsilon"]) == pytest.approx(
            (ratios.max() - ratios.min()) / (ratios.max() + ratios.min()), rel=1e-9
        )
    assert "| 4 | " in (out / "curve.md").read_text() and (out / "curve.png").read_bytes()[:4] == b"\x89PNG"
    shutil.copytree(job_dir(sweep, 0), sweep / "2")  # a second run at k=4: refused in one line
    again = jl_compare(f"compare.sweep={sweep}", f"hydra.run.dir={tmp_path / 'curve2'}", cwd=tmp_path)
    assert again.returncode == 2 and "k=4 appears in" in again.stderr and "Traceback" not in again.stderr


def test_default_run_dirs_live_under_outputs(tmp_path):
    proc = jl_train(*SMALL, "trainer.max_steps=5", "baseline.draws=2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "outputs" / "runs").glob("*/*"))
    assert len(runs) == 1 and (runs[0] / "summary.json").is_file()


def test_same_config_and_seed_give_identical_embedding(cfg_factory):
    overrides = [*SMALL, "trainer.max_steps=120", "logger=none"]
    a, _ = train(cfg_factory(*overrides))
    b, _ = train(cfg_factory(*overrides))
    first, second = (np.load(Path(cfg) / "embedding.npy").tobytes() for cfg in (a["run_dir"], b["run_dir"]))
    assert first == second
    assert a["final_distortion"] == b["final_distortion"]


def _brute_pairs_eps(A: np.ndarray, X: np.ndarray) -> float:
    """Worst |‖A(x_i - x_j)‖²/‖x_i - x_j‖² - 1| over i < j, from explicit difference vectors."""
    worst = 0.0
    for i in range(len(X) - 1):
        diff = X[i] - X[i + 1 :]
        dx = (diff**2).sum(1)
        ok = dx > 0
        worst = max(worst, float(np.abs(((diff[ok] @ A.T) ** 2).sum(1) / dx[ok] - 1).max()))
    return worst


def test_digits_pairs_beats_the_best_of_20_gaussian_draws(tmp_path):
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_digits

    run_dir = tmp_path / "digits"
    proc = jl_train(
        "experiment=digits_pairs",
        "trainer.max_steps=300",
        "baseline.draws=20",
        "log_every=50",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["mode"] == "pairs" and summary["baseline_gaussian"]["mode"] == "pairs"
    assert summary["best_distortion"] < summary["baseline_gaussian"]["best"]
    # the active strategy's reported figure is the exact all-pairs epsilon of the exported matrix
    digits = load_digits().data
    heldout = np.array(summary["heldout_rows"])
    train_rows = np.setdiff1d(np.arange(len(digits)), heldout)
    assert len(heldout) == round(0.2 * len(digits)) == summary["n_heldout"]
    embedding = np.load(run_dir / "embedding.npy")
    assert _brute_pairs_eps(embedding, digits[train_rows]) == pytest.approx(summary["best_distortion"], rel=1e-9)
    assert _brute_pairs_eps(embedding, digits[heldout]) == pytest.approx(
        summary["heldout"]["pairs"]["epsilon"], rel=1e-9
    )
    assert set(summary["heldout"]) == {"points", "pairs", "cross_pairs"}
    assert summary["heldout"]["cross_pairs"]["count"] == len(train_rows) * len(heldout)


def jl_compare(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("jl-compare")
    cmd = [exe] if exe else [sys.executable, "-m", "jl_lightning.apps.compare"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd + list(args), cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def test_jl_compare_on_a_finished_run_writes_its_table_and_figure(finished_run, tmp_path):
    import csv

    _, run_dir, _ = finished_run
    out = tmp_path / "cmp"
    proc = jl_compare(f"compare.run={run_dir}", "compare.draws=4", f"hydra.run.dir={out}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r["method"]: r for r in csv.DictReader((out / "comparison.csv").open())}
    assert set(rows) == {"gaussian", "rademacher", "sparse", "srht", "pca", "pca (best scale)", "learned (jl-train)"}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert float(rows["learned (jl-train)"]["epsilon_best"]) == pytest.approx(summary["best_distortion"], rel=1e-9)
    for method in ("gaussian", "srht"):
        assert rows[method]["draws"] == "4"
        assert float(rows[method]["epsilon_best"]) <= float(rows[method]["epsilon_mean"])
        assert float(rows[method]["multiplicative_best"]) >= 1.0
    assert float(rows["learned (jl-train)"]["epsilon_best"]) < float(rows["gaussian"]["epsilon_best"])
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| learned (jl-train) |" in (out / "comparison.md").read_text()
    assert "| learned (jl-train) |" in proc.stdout
    # never over an earlier comparison
    again = jl_compare(f"compare.run={run_dir}", "compare.draws=2", f"hydra.run.dir={out}", cwd=tmp_path)
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr


def test_jl_compare_pairs_mode_on_a_dataset_config(tmp_path):
    out = tmp_path / "cmp"
    import csv

    from jl_lightning.metrics.neighbors import recall_at_k

    proc = jl_compare(
        "data.source.n=40",
        "data.source.d=20",
        "model.k=5",
        "model.mode=pairs",
        "data.val_fraction=0.25",
        "compare.draws=3",
        "compare.methods=[gaussian,sparse,pca,numax]",
        "compare.numax.steps=2",
        f"hydra.run.dir={out}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = (out / "comparison.md").read_text()
    assert "pairs" in text.splitlines()[0] and "| sparse | 3 |" in text
    rows = {r["method"]: r for r in csv.DictReader((out / "comparison.csv").open())}
    assert "numax (best scale)" in rows
    # PCA's recall and held-out figures, recomputed here from its matrix on the run's split
    from jl_lightning.apps.config import compose
    from jl_lightning.baselines.references import pca_matrix
    from jl_lightning.lightning.fit import build_datamodule

    cfg = compose(
        ["data.source.n=40", "data.source.d=20", "model.k=5", "model.mode=pairs", "data.val_fraction=0.25"],
        config_name="compare",
    )
    data = build_datamodule(cfg.data)
    A = pca_matrix(data.points, 5)
    assert float(rows["pca"]["recall"]) == pytest.approx(recall_at_k(A, data.points, 10), abs=1e-12)
    held = evaluate(A, data.points, "pairs", heldout=data.val_points).heldout
    assert float(rows["pca"]["heldout_pairs_distortion"]) == pytest.approx(held["pairs"].epsilon, rel=1e-9)
    assert float(rows["pca"]["cross_pairs_distortion"]) == pytest.approx(held["cross_pairs"].epsilon, rel=1e-9)
    bad = jl_compare("compare.methods=[fjlt]", f"hydra.run.dir={tmp_path / 'bad'}", cwd=tmp_path)
    assert bad.returncode == 2 and "compare.methods: unknown ['fjlt']" in bad.stderr
