"""Nothing silently wrong: scale invariance, non-finite matrices refused, honest short runs,
one run per folder, resume, one-line errors, file permissions and temporaries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import concurrently, jl_train

from jl_lightning.errors import JLInputError, JLRunError
from jl_lightning.io.validation import validate_points
from jl_lightning.metrics import evaluate
from tests.helpers import SIGNALLED_RUN, pair_ratios

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TESTS = Path(__file__).resolve().parent


# ------------------------------------------------------------------ scale
@settings(max_examples=40, deadline=None)
@given(exponent=st.integers(min_value=-300, max_value=300), seed=st.integers(0, 10**6))
def test_pairs_points_at_any_magnitude_give_the_same_distortion(exponent, seed):
    """Property: the validated points of s X (any s float64 holds) are X's to a float64
    rounding, and a fixed matrix has the same exact pairs epsilon on them, to 1e-9 relative."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((12, 5))
    A = rng.standard_normal((3, 5))
    base, base_scale = validate_points(X, "x", normalize=False, mode="pairs", return_scale=True)
    scaled, scale = validate_points(X * 10.0**exponent, "x", normalize=False, mode="pairs", return_scale=True)
    assert np.abs(scaled).max() == 1.0  # nothing near overflow or underflow
    np.testing.assert_allclose(scaled, base, rtol=1e-14, atol=1e-15)  # the same points, whatever s
    eps = evaluate(A, scaled, "pairs", quantiles=False).epsilon
    assert eps == pytest.approx(evaluate(A, base, "pairs", quantiles=False).epsilon, rel=1e-9)


@settings(max_examples=30, deadline=None)
@given(exponent=st.integers(min_value=-300, max_value=300))
def test_unit_normalization_survives_any_magnitude(exponent):
    X = np.random.default_rng(0).standard_normal((6, 4)) * 10.0**exponent
    unit = validate_points(X, "x", normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-12)


def test_training_in_pairs_mode_is_scale_invariant(cfg_factory):
    """The same run on data scaled by 1e-30, 1 and 1e150 ends at the same epsilon (1e-6 relative):
    the float32 training data are the same whatever the scale."""
    from jl_lightning.io.sources import ArrayPoints
    from jl_lightning.lightning.fit import fit_from_config

    X = np.random.default_rng(3).standard_normal((40, 10)) * 3 + 1
    eps = []
    for scale in (1e-30, 1.0, 1e150):
        cfg = cfg_factory(
            "model.mode=pairs",
            "model.k=4",
            "trainer.max_steps=60",
            "logger=none",
            "baseline.draws=0",
            "log_every=10",
            "~callbacks.model_checkpoint",
            "data.val_fraction=0",
        )
        eps.append(fit_from_config(cfg, source=ArrayPoints(X * scale), interactive=False).summary["best_distortion"])
    assert eps[0] == pytest.approx(eps[1], rel=1e-6) and eps[2] == pytest.approx(eps[1], rel=1e-6)


# ------------------------------------------------------------------ non-finite
def test_no_non_finite_matrix_leaves_a_run(tmp_path):
    from jl_lightning import JLEmbedding
    from jl_lightning.apps.estimator import load_embedding_matrix
    from jl_lightning.io.run_folder import write_results

    bad = np.ones((2, 3))
    bad[1, 2] = np.nan
    with pytest.raises(JLRunError, match="embedding.npy .not written.: the matrix holds 1 NaN or Inf"):
        write_results(tmp_path / "run", bad, {})
    assert not (tmp_path / "run" / "embedding.npy").exists()
    np.save(tmp_path / "m.npy", bad)
    with pytest.raises(JLRunError, match=r"m\.npy: the matrix holds"):
        load_embedding_matrix(tmp_path / "m.npy")
    np.savez(tmp_path / "e.npz", components=bad, metadata=np.array("{}"))
    with pytest.raises(JLRunError, match=r"e\.npz: the matrix holds"):
        JLEmbedding.load(tmp_path / "e.npz")


def test_evaluate_never_reports_a_negative_or_nan_epsilon():
    """NaN maps are refused; for any finite map (the zero map, tiny and huge scales) epsilon is
    the brute-force max of |ratio - 1| over the points or pairs, so never negative."""
    from jl_lightning.metrics.distortion import NonFiniteDistortion

    rng = np.random.default_rng(0)
    X = rng.standard_normal((10, 3))
    A = np.full((2, 3), np.nan)
    for mode in ("norms", "pairs"):
        with pytest.raises(NonFiniteDistortion):
            evaluate(A, X, mode)
    for A in (
        np.zeros((2, 3)),
        rng.standard_normal((2, 3)) * 1e-150,
        rng.standard_normal((2, 3)),
        rng.standard_normal((2, 3)) * 1e100,
    ):
        brute = {
            "norms": ((X @ A.T) ** 2).sum(1) / (X**2).sum(1),
            "pairs": pair_ratios(A, X)[0],
        }
        for mode, ratios in brute.items():
            eps = evaluate(A, X, mode, quantiles=False).epsilon
            assert eps >= 0 and eps == pytest.approx(np.abs(ratios - 1).max(), rel=1e-9)


def test_transform_refuses_nan_and_keeps_float32(tmp_path):
    from jl_lightning import JLEmbedding

    np.savez(tmp_path / "e.npz", components=np.arange(6.0).reshape(2, 3), metadata=np.array("{}"))
    emb = JLEmbedding.load(tmp_path / "e.npz")
    X = np.arange(9, dtype=np.float32).reshape(3, 3)
    Y = emb.transform(X)
    assert Y.dtype == np.float32
    np.testing.assert_allclose(Y, X.astype(np.float64) @ emb.components_.T, rtol=1e-6)
    assert emb.transform(X.astype(np.float64)).dtype == np.float64
    X[1, 1] = np.inf
    with pytest.raises(JLInputError, match="row 1 .0-based. contains inf"):
        emb.transform(X)
    with pytest.raises(JLInputError, match="does not exist"):
        emb.save(tmp_path / "missing" / "e.npz")
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(JLInputError, match="could not read as a saved JLEmbedding"):
        JLEmbedding.load(tmp_path / "corrupt.npz")


# ------------------------------------------------------------------ short runs
@pytest.mark.parametrize("steps", [0, -1])
def test_max_steps_must_be_positive(cfg_factory, steps):
    from jl_lightning.apps.train import train

    with pytest.raises(JLInputError, match="trainer.max_steps must be a positive integer"):
        train(cfg_factory("debug=fast", "logger=none", f"trainer.max_steps={steps}"))


def test_a_short_run_says_it_did_not_converge(cfg_factory):
    from jl_lightning.apps.train import final_line, train

    summary, _ = train(cfg_factory("debug=fast", "logger=none", "trainer.max_steps=5", "model.variance=log"))
    assert summary["converged"] is False and summary["sigma2_final"] > 0
    line = final_line(summary)
    assert line.startswith("NOT CONVERGED: sigma^2 = ")
    worse = dict(summary, best_distortion=2.0, baseline_gaussian={"mean": 3.0, "best": 1.0, "draws": 10})
    assert "NOT below the best Gaussian draw" in final_line(worse)


# ------------------------------------------------------------------ files
def test_outputs_follow_the_umask_and_dead_writers_temporaries_are_removed(tmp_path):
    from jl_lightning.io.run_folder import atomic_write

    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.bin", lambda h: h.write(b"x"))
    finally:
        os.umask(old)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = tmp_path / f".b.bin.{dead}.abc.tmp"
    stale.write_bytes(b"half")
    atomic_write(tmp_path / "b.bin", lambda h: h.write(b"y"))
    assert not stale.exists() and (tmp_path / "b.bin").read_bytes() == b"y"


def test_the_lock_is_exclusive_and_a_refused_run_removes_the_folder_it_made(tmp_path):
    from jl_lightning.io.run_folder import LOCK_NAME, lock_is_stale, read_lock, release_lock, take_lock

    folder = tmp_path / "run"
    take_lock(folder)
    with pytest.raises(FileExistsError, match="in use by another run"):
        take_lock(folder)
    assert read_lock(folder)["pid"] == os.getpid() and not lock_is_stale(read_lock(folder))
    release_lock(folder, abandon=True)
    assert not folder.exists()  # created by this run, abandoned: gone
    folder.mkdir()
    (folder / LOCK_NAME).write_text(json.dumps({"pid": 2**22 + 12345, "host": os.uname().nodename}))
    assert lock_is_stale(read_lock(folder))
    take_lock(folder, takeover=True)  # a dead run's lock is taken over only when resuming
    release_lock(folder, abandon=True)
    assert folder.exists()  # existed before: kept


# ------------------------------------------------------------------ the real entry
@pytest.mark.slow
def test_refused_runs_are_one_line_on_stderr_and_leave_no_folder(tmp_path):
    cases = [
        (("data=file",), "data.source.path is required"),
        (("optimizer.lr=-1",), "optimizer.lr must be a number > 0 or auto, got -1"),
        (("model.n_samples=0",), "model.n_samples must be a positive integer"),
        (("+ckpt_path=x.ckpt",), "unknown option(s) ckpt_path"),
        # pairs mode: the auto settings' line waits until the options are accepted
        (("model.loss.active_rescan=0", "model.mode=pairs"), "model.loss.active_rescan must be a positive integer"),
    ]
    run_dirs = [tmp_path / args[0].replace("=", "_").replace("+", "") for args, _ in cases]
    procs = concurrently(
        *(
            lambda args=args, run_dir=run_dir: jl_train("debug=fast", *args, f"hydra.run.dir={run_dir}", cwd=tmp_path)
            for (args, _), run_dir in zip(cases, run_dirs)
        )
    )
    for (_, message), run_dir, proc in zip(cases, run_dirs, procs):
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == "" and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
        assert not run_dir.exists()


@pytest.mark.slow
@pytest.mark.parametrize("mode, variance", [("norms", "log"), ("pairs", "raw")])
def test_a_killed_run_resumes_to_the_same_embedding(tmp_path, mode, variance):
    """SIGKILL at step 60 of 150 (after the checkpoint of step 50), resume=RUN_DIR: the same
    embedding.npy, bit for bit, as the uninterrupted run (log sigma^2 is still positive at the
    kill, the raw one may have reached 0; in pairs mode the checkpoint carries the active
    set's candidates, rescanned every 7 steps)."""
    extra = (
        ["model.loss.active_candidates=200", "model.loss.active_rescan=7", "model.loss.active_hard=20"]
        if mode == "pairs"
        else []
    )
    common = [
        "debug=fast",
        "data.source.n=30",
        "data.source.d=40",
        f"model.mode={mode}",
        *extra,
        f"model.variance={variance}",
        "trainer.max_steps=150",
        "log_every=10",
        "callbacks.model_checkpoint.every_n_train_steps=50",
        "logger=csv",
        "baseline.draws=3",
    ]
    env = {"PYTHONPATH": str(TESTS), "JL_EXTRA_TARGETS": "kill_at."}
    full, killed = concurrently(
        lambda: jl_train(*common, f"hydra.run.dir={tmp_path / 'full'}", cwd=tmp_path),
        lambda: jl_train(
            *common,
            f"hydra.run.dir={tmp_path / 'killed'}",
            "+callbacks.kill._target_=kill_at.KillAt",
            "+callbacks.kill.step=60",
            cwd=tmp_path,
            env_extra=env,
        ),
    )
    assert full.returncode == 0, full.stderr
    assert killed.returncode == -9 and not (tmp_path / "killed" / "embedding.npy").exists()
    again = jl_train("debug=fast", f"hydra.run.dir={tmp_path / 'killed'}", cwd=tmp_path)  # occupied: refused
    assert again.returncode == 2 and "resume=" in again.stderr
    resumed = jl_train(f"resume={tmp_path / 'killed'}", cwd=tmp_path, env_extra=env)
    assert resumed.returncode == 0, resumed.stderr
    a, b = (np.load(tmp_path / name / "embedding.npy") for name in ("full", "killed"))
    np.testing.assert_array_equal(a, b)
    sa, sb = (json.loads((tmp_path / name / "summary.json").read_text()) for name in ("full", "killed"))
    assert sa["best_distortion"] == sb["best_distortion"] and sa["steps"] == sb["steps"] == 150
    assert [h[0] for h in sa["distortion_history"]] == [h[0] for h in sb["distortion_history"]]
    assert not (tmp_path / "killed" / ".jl_lock").exists()


@pytest.mark.slow
@pytest.mark.parametrize("signal_name, step", [("SIGTERM", 13), ("SIGINT", 36)])
def test_a_signalled_run_stops_cleanly_and_resumes_to_the_same_embedding(tmp_path, signal_name, step):
    """SIGTERM or SIGINT in a pairs run with candidates (rescans every 7 steps, exact passes
    every 50, a periodic checkpoint every 50): the run finishes its step, saves it, prints
    one line and exits 143 / 130, lock released; resume=RUN_DIR ends with the uninterrupted
    run's embedding.npy bit for bit, though the signal came before the first periodic
    checkpoint (step 13) or between two exact passes and two rescans (step 36)."""
    common = list(SIGNALLED_RUN)
    env = {"PYTHONPATH": str(TESTS), "JL_EXTRA_TARGETS": "kill_at."}
    run_dir = tmp_path / "stopped"
    full, stopped = concurrently(
        lambda: jl_train(*common, f"hydra.run.dir={tmp_path / 'full'}", cwd=tmp_path),
        lambda: jl_train(
            *common,
            f"hydra.run.dir={run_dir}",
            "+callbacks.kill._target_=kill_at.KillAt",
            f"+callbacks.kill.step={step}",
            f"+callbacks.kill.signal={signal_name}",
            cwd=tmp_path,
            env_extra=env,
        ),
    )
    assert full.returncode == 0, full.stderr
    assert stopped.returncode == {"SIGTERM": 143, "SIGINT": 130}[signal_name]
    lines = stopped.stderr.strip().splitlines()
    assert lines == [
        f"jl-train: stopped by {signal_name} at step {step + 1} of 120; checkpoints/last.ckpt holds "
        f"that step; continue with: jl-train resume={run_dir}"
    ]
    assert not (run_dir / "embedding.npy").exists() and not (run_dir / ".jl_lock").exists()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and not list(run_dir.glob("checkpoints/.*tmp"))
    resumed = jl_train(f"resume={run_dir}", cwd=tmp_path, env_extra=env)
    assert resumed.returncode == 0, resumed.stderr
    np.testing.assert_array_equal(np.load(run_dir / "embedding.npy"), np.load(tmp_path / "full" / "embedding.npy"))


@pytest.mark.slow
def test_a_run_signalled_before_its_first_step_leaves_nothing(tmp_path):
    """SIGTERM while the references are measured: nothing to save, so one line, exit 143 and
    no run folder (a fresh command starts over)."""
    run_dir = tmp_path / "early"
    stopped = jl_train(
        "debug=fast",
        f"hydra.run.dir={run_dir}",
        "+callbacks.kill._target_=kill_at.KillAt",
        "+callbacks.kill.step=-1",
        "+callbacks.kill.signal=SIGTERM",
        cwd=tmp_path,
        env_extra={"PYTHONPATH": str(TESTS), "JL_EXTRA_TARGETS": "kill_at."},
    )
    assert stopped.returncode == 143
    assert stopped.stderr.strip().splitlines() == [
        "jl-train: stopped by SIGTERM before any training step was saved; nothing was kept (run the command again)"
    ]
    assert not run_dir.exists()


@pytest.mark.slow
def test_resume_and_compare_refuse_a_data_file_that_changed(tmp_path):
    """The checkpoint and summary.json record the data's fingerprint: after the file changed,
    resume= and jl-compare refuse in one line (exit 2) naming the file and both fingerprints."""
    from jl_lightning.io.run_folder import fingerprint

    data = tmp_path / "x.npy"
    X = np.random.default_rng(0).standard_normal((20, 6))
    np.save(data, X)
    common = ["debug=fast", "data=file", f"data.source.path={data}", "model.k=3", "logger=none", "baseline.draws=0"]
    env = {"PYTHONPATH": str(TESTS), "JL_EXTRA_TARGETS": "kill_at."}
    stopped_dir, done_dir = tmp_path / "stopped", tmp_path / "done"
    stopped, done = concurrently(
        lambda: jl_train(
            *common,
            f"hydra.run.dir={stopped_dir}",
            "+callbacks.kill._target_=kill_at.KillAt",
            "+callbacks.kill.step=5",
            "+callbacks.kill.signal=SIGTERM",
            cwd=tmp_path,
            env_extra=env,
        ),
        lambda: jl_train(*common, f"hydra.run.dir={done_dir}", cwd=tmp_path),
    )
    assert stopped.returncode == 143, stopped.stderr
    assert done.returncode == 0, done.stderr
    X[3, 2] += 1.0
    np.save(data, X)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    new, old = fingerprint(unit), json.loads((done_dir / "summary.json").read_text())["data_fingerprint"]
    assert new != old
    resumed, compare = concurrently(
        lambda: jl_train(f"resume={stopped_dir}", cwd=tmp_path, env_extra=env),
        lambda: subprocess.run(
            [
                sys.executable,
                "-m",
                "jl_lightning.apps.compare",
                f"compare.run={done_dir}",
                f"hydra.run.dir={tmp_path / 'cmp'}",
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        ),
    )
    lines = resumed.stderr.strip().splitlines()
    assert resumed.returncode == 2 and len(lines) == 1, resumed.stderr
    assert str(data) in lines[0] and new[:23] in lines[0] and old[:23] in lines[0] and "data changed" in lines[0]
    assert (stopped_dir / "checkpoints" / "last.ckpt").is_file()  # the stopped run is kept as it was
    lines = compare.stderr.strip().splitlines()
    assert compare.returncode == 2 and len(lines) == 1 and "data changed" in lines[0] and old[:23] in lines[0]
    assert not (tmp_path / "cmp").exists()


# ------------------------------------------------------------------ jl-embed
def test_jl_embed_key_option_and_float32_overflow(tmp_path, capsys):
    from jl_lightning.apps.embed import main as jl_embed

    np.save(tmp_path / "m.npy", np.eye(2, 3))
    np.savez(tmp_path / "x.npz", a=np.ones((4, 3)), b=np.zeros((4, 3)))
    assert jl_embed([str(tmp_path / "m.npy"), str(tmp_path / "x.npz"), str(tmp_path / "o.npy")]) == 2
    assert "choose one with --key" in capsys.readouterr().err
    assert jl_embed([str(tmp_path / "m.npy"), str(tmp_path / "x.npz"), str(tmp_path / "o.npy"), "--key", "a"]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), np.ones((4, 2), dtype=np.float32))
    np.save(tmp_path / "big.npy", np.full((2, 3), 1e200))
    assert jl_embed([str(tmp_path / "m.npy"), str(tmp_path / "big.npy"), str(tmp_path / "p.npy")]) == 2
    assert "does not fit float32" in capsys.readouterr().err and not (tmp_path / "p.npy").exists()
    assert not list(tmp_path.glob(".p.npy*"))  # no temporary left


# ------------------------------------------------------------------ loaders, as properties
finite_floats = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 6), cols=st.integers(1, 5), data=st.data())
def test_npy_and_csv_loaders_return_exactly_what_was_written(tmp_path_factory, rows, cols, data):
    """Property: any finite float64 array survives .npy and .csv (written with repr precision)
    unchanged, whatever its first row looks like, with header=false; and a header line of
    names is skipped under auto."""
    from jl_lightning.io.loading import load_points

    values = np.array(
        data.draw(st.lists(st.lists(finite_floats, min_size=cols, max_size=cols), min_size=rows, max_size=rows)),
        dtype=np.float64,
    )
    folder = tmp_path_factory.mktemp("loaders")
    np.save(folder / "x.npy", values)
    np.testing.assert_array_equal(load_points(folder / "x.npy"), values)
    lines = [",".join(repr(float(v)) for v in row) for row in values]
    (folder / "x.csv").write_text("\n".join(lines) + "\n")
    np.testing.assert_array_equal(load_points(folder / "x.csv", header=False), values)
    (folder / "named.csv").write_text(",".join(f"c{j}" for j in range(cols)) + "\n" + "\n".join(lines) + "\n")
    np.testing.assert_array_equal(load_points(folder / "named.csv"), values)
