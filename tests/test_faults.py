"""Faults a real run meets, each with one clear outcome: one validation for every entry,
Hydra's errors in one line, damaged checkpoints, changed data, unusable or full disks,
sweeps with a bad job. The signal tests are in test_reliability.py."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from jl_lightning.errors import JLInputError
from tests.conftest import concurrently
from tests.helpers import job_dir, job_dirs

TESTS = Path(__file__).resolve().parent


# ------------------------------------------------------------- one validation, every entry
BAD_ARRAYS = {
    "complex": (np.ones((4, 3)) * (1 + 2j), "complex"),
    "a NaN": (np.array([[1.0, 2, 3], [4, np.nan, 6]]), "row 1 .0-based. contains NaN"),
    "an Inf": (np.array([[1.0, 2, 3], [4, 5, np.inf]]), "row 1 .0-based. contains inf"),
    "1-D": (np.ones(3), r"expected a 2-D array"),
    "empty": (np.ones((0, 3)), "empty"),
    "strings": (np.array([["a", "b", "c"]]), "expected an array of numbers"),
}


@pytest.mark.parametrize("case", sorted(BAD_ARRAYS))
def test_every_entry_refuses_the_same_arrays_with_the_same_words(tmp_path, case):
    """validate_points (jl-train's data), JLEmbedding.fit, JLEmbedding.transform and jl-embed's
    chunks all go through check_array: the same input gets the same refusal, a ValueError."""
    from jl_lightning import JLEmbedding
    from jl_lightning.apps.embed import embed_file
    from jl_lightning.io.validation import validate_points

    X, words = BAD_ARRAYS[case]
    emb = JLEmbedding.from_matrix(np.eye(2, 3))
    calls = {
        "jl-train's data": lambda: validate_points(X, "data"),
        "fit": lambda: JLEmbedding(n_components=2, max_steps=2).fit(X),
        "transform": lambda: emb.transform(X),
    }
    if X.dtype.kind in "fc" and X.ndim == 2:  # what a .npy can hold and jl-embed streams
        np.save(tmp_path / "x.npy", X)
        calls["jl-embed"] = lambda: embed_file(np.eye(2, 3), tmp_path / "x.npy", tmp_path / "y.npy")
    for entry, call in calls.items():
        with pytest.raises(ValueError, match=words) as caught:
            call()
        assert isinstance(caught.value, JLInputError), entry
    assert not (tmp_path / "y.npy").exists()


def test_non_finite_sparse_rows_and_float32_overflow_are_refused_as_jl_embed_refuses_them():
    sparse = pytest.importorskip("scipy.sparse")
    from jl_lightning import JLEmbedding

    emb = JLEmbedding.from_matrix(np.eye(2, 3) * 10.0)
    with pytest.raises(JLInputError, match="row 1 .0-based. contains NaN"):
        emb.transform(sparse.csr_matrix(np.array([[1.0, 0, 0], [0, np.nan, 0]])))
    with pytest.raises(JLInputError, match="fit.X.: row 2 .0-based. contains inf"):
        JLEmbedding(n_components=2).fit(sparse.csr_matrix(np.array([[1.0, 0, 0], [0, 1, 0], [np.inf, 0, 1]])))
    big = np.full((2, 3), 1e38, dtype=np.float32)  # times 10: past float32's 3.4e38
    with pytest.raises(JLInputError, match="row 0 .0-based.: its embedded vector does not fit float32"):
        emb.transform(big)
    np.testing.assert_allclose(emb.transform(big.astype(np.float64)), np.full((2, 2), 1e39))


@pytest.mark.parametrize(
    "override, words",
    [
        ("threads=0", "threads must be a positive integer or null, got 0"),
        ("threads=-1", "threads must be a positive integer or null, got -1"),
        ("seed=abc", "seed must be an integer in \\[0, 2\\^32\\), got 'abc'"),
        ("seed=-1", "seed must be an integer"),
        ("log_every=0", "^log_every must be a positive integer, got 0"),
        ("optimizer.lr=0", "optimizer.lr must be a number > 0 or auto, got 0"),
        (f"threads={100 * (os.cpu_count() or 1)}", "is more than 4 per core of this machine's"),
    ],
)
def test_run_options_are_checked_under_their_own_names(cfg_factory, override, words):
    from jl_lightning.lightning.fit import fit_from_config

    with pytest.raises(JLInputError, match=words):
        fit_from_config(cfg_factory("debug=fast", "logger=none", override), interactive=False)


def test_n_samples_whose_noise_cannot_fit_in_memory_is_refused_before_allocating():
    from jl_lightning.lightning.sampler import check_sample_memory

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    most = (memory // 2) // (4 * 30 * 500)
    assert check_sample_memory(most, 30, 500) == most
    with pytest.raises(
        JLInputError, match=f"model.n_samples={most + 1}: a step's noise needs .* GiB .* at most {most} here"
    ):
        check_sample_memory(most + 1, 30, 500)


def test_data_options_where_nothing_reads_them_and_files_that_are_not_files(tmp_path):
    from jl_lightning.io.loading import load_points

    X = np.arange(12.0).reshape(4, 3)
    np.save(tmp_path / "x.npy", X)
    torch.save(torch.from_numpy(X), tmp_path / "t.pt")
    with pytest.raises(JLInputError, match="data.source.key=a applies to .npz files and .pt dicts"):
        load_points(tmp_path / "x.npy", key="a")
    with pytest.raises(JLInputError, match="data.source.key=a applies to a dict of tensors"):
        load_points(tmp_path / "t.pt", key="a")
    with pytest.raises(JLInputError, match="data.source.header=True applies to .csv files only"):
        load_points(tmp_path / "x.npy", header=True)
    with pytest.raises(JLInputError, match="data.source.path is empty"):
        load_points("")
    os.mkfifo(tmp_path / "pipe.npy")
    with pytest.raises(JLInputError, match="not a regular file"):  # refused without opening: no hang
        load_points(tmp_path / "pipe.npy")
    torch.save(torch.eye(3).to_sparse(), tmp_path / "sparse.pt")
    with pytest.raises(JLInputError, match="sparse tensor"):
        load_points(tmp_path / "sparse.pt")
    torch.save({"x": torch.ones(2, 2), "obj": Path("p")}, tmp_path / "pickled.pt")
    with pytest.raises(JLInputError) as caught:
        load_points(tmp_path / "pickled.pt")
    assert "pickled Python objects" in str(caught.value) and "\n" not in str(caught.value)
    (tmp_path / "bom.csv").write_text("1.5,2,3\n4,5,6\n", encoding="utf-8-sig")
    np.testing.assert_array_equal(load_points(tmp_path / "bom.csv"), [[1.5, 2, 3], [4, 5, 6]])


def test_jlembedding_files_that_do_not_hold_what_they_claim(tmp_path):
    from jl_lightning import JLEmbedding

    np.save(tmp_path / "m.npy", np.eye(2, 3))
    with pytest.raises(JLInputError, match="a bare array, not a .npz saved by JLEmbedding.save"):
        JLEmbedding.load(tmp_path / "m.npy")
    np.savez(tmp_path / "e.npz", components=np.eye(2, 3), metadata=np.array(json.dumps({"n_features_in": 5})))
    with pytest.raises(JLInputError, match="n_features_in=5, but the components have shape \\(2, 3\\)"):
        JLEmbedding.load(tmp_path / "e.npz")
    emb = JLEmbedding.from_matrix(np.load(tmp_path / "m.npy"))
    np.testing.assert_array_equal(emb.transform(np.ones((1, 3))), [[1.0, 1.0]])
    with pytest.raises(JLInputError, match="/proc/jl_embedding.npz: could not write"):
        emb.save("/proc/jl_embedding.npz")


def test_a_bad_option_of_jlembedding_is_its_own_error_not_hydras():
    from jl_lightning import JLEmbedding

    X = np.random.default_rng(0).standard_normal((10, 4))
    with pytest.raises(JLInputError, match="model.mode .* must be norms or pairs, got 'pair'"):
        JLEmbedding(n_components=2, mode="pair", max_steps=2).fit(X)
    with pytest.raises(JLInputError, match="model.kk: no such option"):
        JLEmbedding(n_components=2, max_steps=2, overrides=("model.kk=3",)).fit(X)


# ------------------------------------------------------------- Hydra's errors, one line each
@pytest.mark.parametrize(
    "overrides, words",
    [
        (["experiment=paperr"], "experiment=paperr: no such experiment config; choose from .*digits_pairs.*paper"),
        (["data=fil"], "data=fil: no such data config; choose from .*file"),
        (["model.kk=4"], "model.kk: no such option; model takes: .*\\bk\\b.*mode"),
        (["model.k=["], "could not parse an override"),
    ],
)
def test_composition_errors_become_one_line_naming_the_option(overrides, words, monkeypatch):
    from jl_lightning.apps.config import compose, composition_error_message

    monkeypatch.setattr(sys, "argv", ["jl-train", *overrides])
    with pytest.raises(Exception) as caught:
        compose(overrides)
    message = composition_error_message(caught.value, "train")
    assert message is not None and "\n" not in message
    assert __import__("re").search(words, message), message


def test_a_key_a_class_does_not_take_is_named_with_those_it_does():
    from hydra.utils import instantiate

    from jl_lightning.apps.config import compose, user_error_message

    cfg = compose(["data=file", "data.source.path=x.npy", "+data.source.n=3"])
    with pytest.raises(Exception) as caught:
        instantiate(cfg.data)
    assert (
        user_error_message(caught.value)
        == "data.source.n: no such option for FilePoints; data.source takes: path, key, header"
    )


def test_every_experiment_composes_with_data_file(tmp_path):
    """Data keys live in the data group: any experiment runs on the user's file."""
    from hydra.utils import instantiate

    from jl_lightning.apps.config import CONFIG_DIR, compose

    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((12, 6)))
    for name in sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml")):
        cfg = compose([f"experiment={name}", "data=file", f"data.source.path={tmp_path / 'x.npy'}"])
        source = instantiate(cfg.data.source)
        assert source.load().shape == (12, 6), name


# ------------------------------------------------------------- checkpoints and data that changed
def test_a_checkpoint_of_other_data_is_refused_by_the_datamodule(cfg_factory):
    from jl_lightning.lightning.fit import build_datamodule

    a = build_datamodule(cfg_factory("debug=fast").data)
    b = build_datamodule(cfg_factory("debug=fast", "data.source.seed=1").data)
    a.load_state_dict(a.state_dict())  # its own data: fine
    with pytest.raises(
        JLInputError,
        match="the data changed .* now gives sha256:[0-9a-f]{16}…, the run trained on sha256:[0-9a-f]{16}…",
    ):
        b.load_state_dict(a.state_dict())
    b.load_state_dict({})  # a checkpoint from before fingerprints: nothing to compare


def test_damaged_or_foreign_checkpoints_are_refused_in_one_line(tmp_path):
    from jl_lightning.apps.train import check_checkpoint

    good = {"state_dict": {"mean": torch.zeros(2, 3)}, "loops": {}}
    torch.save(good, tmp_path / "good.ckpt")
    check_checkpoint(tmp_path / "good.ckpt", "resume=x")
    data = (tmp_path / "good.ckpt").read_bytes()
    (tmp_path / "truncated.ckpt").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.ckpt").write_bytes(b"not a checkpoint")
    torch.save({"state_dict": {"weight": torch.ones(2)}}, tmp_path / "foreign.ckpt")
    for name, words in (
        ("truncated", "cannot be read as a checkpoint"),
        ("garbage", "cannot be read"),
        ("foreign", "is not a jl-train checkpoint"),
    ):
        with pytest.raises(JLInputError, match=words) as caught:
            check_checkpoint(tmp_path / f"{name}.ckpt", "resume=x")
        assert "\n" not in str(caught.value)


# ------------------------------------------------------------- the sweep summary
def test_the_sweep_summary_lists_a_failed_job_and_why(tmp_path):
    from jl_lightning.apps.sweep_summary import collect, markdown, record_failure

    for job, eps in (("0", 0.5), ("2", 0.4)):
        (tmp_path / job / ".hydra").mkdir(parents=True)
        (tmp_path / job / ".hydra" / "overrides.yaml").write_text(f"- model.k={job}\n")
        (tmp_path / job / "summary.json").write_text(json.dumps({"final_distortion": eps, "best_distortion": eps}))
    record_failure(tmp_path, "1", ["model.k=0"], "model.k must be a positive integer, got 0")
    rows = collect(tmp_path)
    assert [r["job"] for r in rows] == ["0", "1", "2"]
    assert rows[1]["failed"] and rows[1]["overrides"] == "model.k=0"
    text = markdown(rows)
    assert "| 1 | model.k=0 | failed: model.k must be a positive integer, got 0 |" in text
    assert "best: job 2" in text


# ------------------------------------------------------------- through the real entry points
def run(module: str, *args: str, cwd: Path, env_extra: dict | None = None, file_limit: int | None = None):
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))

    def limit():  # a full disk, as a process sees it: writes past the limit fail (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit if file_limit else None,
    )


@pytest.mark.slow
def test_hydra_errors_are_one_line_and_exit_2_unless_the_full_report_is_asked_for(tmp_path):
    cases = (
        (["experiment=paperr"], "jl-train: error: experiment=paperr: no such experiment config"),
        (["model.kk=4"], "jl-train: error: model.kk: no such option; model takes:"),
    )
    *procs, full = concurrently(
        *(lambda args=args: run("jl_lightning.apps.train", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
          for args, _ in cases),
        lambda: run("jl_lightning.apps.train", "model.kk=4", cwd=tmp_path, env_extra={"HYDRA_FULL_ERROR": "1"}),
    )  # fmt: skip
    for (_, words), proc in zip(cases, procs):
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith(words), proc.stderr
        assert proc.stdout == "" and not (tmp_path / "run").exists()
    assert full.returncode == 1 and "Traceback" in full.stderr and "ConfigCompositionException" in full.stderr


@pytest.mark.slow
def test_an_impossible_run_folder_is_one_line_and_nothing_is_created(tmp_path):
    (tmp_path / "a_file").write_text("")
    run_dirs = (tmp_path / "a_file" / "run", Path("/proc/jl_lightning_run"))
    train = "jl_lightning.apps.train"
    procs = concurrently(*(lambda d=d: run(train, "debug=fast", f"hydra.run.dir={d}", cwd=tmp_path) for d in run_dirs))
    for run_dir, proc in zip(run_dirs, procs):
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert f"hydra.run.dir={run_dir}: cannot create the run folder there" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.slow
def test_a_full_disk_mid_run_is_one_line_leaves_an_incomplete_folder_and_resumes(tmp_path):
    """A 40 KB file-size limit stops the run when its event file outgrows it: one line, exit 1,
    no summary.json and no embedding.npy; resumed without the limit, the same embedding.npy as
    a run that never met the limit."""
    common = ["debug=fast", "trainer.max_steps=200", "callbacks.model_checkpoint.every_n_train_steps=50"]
    run_dir = tmp_path / "limited"
    full, limited = concurrently(
        lambda: run("jl_lightning.apps.train", *common, f"hydra.run.dir={tmp_path / 'full'}", cwd=tmp_path),
        lambda: run("jl_lightning.apps.train", *common, f"hydra.run.dir={run_dir}", cwd=tmp_path, file_limit=40 * 1024),
    )
    assert full.returncode == 0, full.stderr
    assert limited.returncode == 1 and limited.stderr.count("\n") == 1, limited.stderr
    assert "failed (File too large)" in limited.stderr and f"jl-train resume={run_dir}" in limited.stderr
    assert not (run_dir / "summary.json").exists() and not (run_dir / "embedding.npy").exists()
    assert not (run_dir / ".jl_lock").exists()
    resumed = run("jl_lightning.apps.train", f"resume={run_dir}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    np.testing.assert_array_equal(np.load(run_dir / "embedding.npy"), np.load(tmp_path / "full" / "embedding.npy"))


@pytest.mark.slow
def test_jl_embed_onto_a_full_disk_or_into_an_impossible_folder_is_one_line(tmp_path):
    np.save(tmp_path / "m.npy", np.eye(2, 3))
    np.save(tmp_path / "x.npy", np.ones((20000, 3)))
    embed, m, x = "jl_lightning.apps.embed", str(tmp_path / "m.npy"), str(tmp_path / "x.npy")
    full_disk, no_folder, no_file = concurrently(
        lambda: run(embed, m, x, str(tmp_path / "y.npy"), cwd=tmp_path, file_limit=64 * 1024),
        lambda: run(embed, m, x, "/proc/jl/y.npy", cwd=tmp_path),
        lambda: run(embed, m, x, "/proc/jl_y.npy", cwd=tmp_path),  # a folder that takes no file
    )
    assert full_disk.returncode == 2 and full_disk.stderr.count("\n") == 1, full_disk.stderr
    assert "File too large" in full_disk.stderr and "y.npy was not written" in full_disk.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy", "x.npy"]  # no output, no temporary
    assert no_folder.returncode == 2 and no_folder.stderr.count("\n") == 1, no_folder.stderr
    assert no_folder.stderr.startswith("jl-embed: error: /proc/jl/y.npy: the directory /proc/jl does not exist")
    proc = no_file  # named, not the temporary
    assert proc.returncode == 2 and proc.stderr == (
        "jl-embed: error: /proc: No such file or directory; /proc/jl_y.npy was not written\n"
    ), proc.stderr


@pytest.mark.slow
def test_a_multirun_with_one_bad_job_runs_the_others_and_says_which_failed(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run(
        "jl_lightning.apps.train",
        "-m",
        "debug=fast",
        "logger=none",
        "model.k=2,0,3",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "jl-train: error: job 1 (debug=fast logger=none model.k=0): model.k must be a positive integer, got 0"
    ]
    assert (job_dir(sweep, 0) / "summary.json").is_file() and (job_dir(sweep, 2) / "summary.json").is_file()
    assert job_dirs(sweep, 1) == [] and not (sweep / ".jl_lock").exists()
    rows = json.loads((sweep / "sweep_summary.json").read_text())["jobs"]
    assert [r["job"] for r in rows] == ["0_logger=none,model.k=2", "1_logger=none,model.k=0", "2_logger=none,model.k=3"]
    assert rows[1]["failed"]
    assert rows[1]["reason"] == "model.k must be a positive integer, got 0"


def test_the_run_guard_refuses_an_unreadable_data_path_before_creating_the_folder(tmp_path):
    """A path that is missing, a directory or a pipe is refused by the Hydra callback that runs
    before Hydra writes anything, so not even an empty run folder is made."""
    from omegaconf import OmegaConf

    from jl_lightning.apps.run_guard import data_path_problem

    os.mkfifo(tmp_path / "pipe.npy")
    np.save(tmp_path / "x.npy", np.ones((3, 2)))
    for path, words in (
        (tmp_path / "nope.npy", "data file not found"),
        (tmp_path, "is a directory"),
        (tmp_path / "pipe.npy", "not a regular file"),
    ):
        assert words in data_path_problem(OmegaConf.create({"data": {"source": {"path": str(path)}}}))
    assert data_path_problem(OmegaConf.create({"data": {"source": {"path": str(tmp_path / "x.npy")}}})) is None
    assert data_path_problem(OmegaConf.create({"data": {"source": {"n": 3}}})) is None  # no file to read
    assert data_path_problem(OmegaConf.create({"data": {"source": {"path": "???"}}})) is None  # the loader says


def test_an_install_without_the_configs_is_told_so(monkeypatch, tmp_path):
    """A package installed without its data (no train.yaml where the configs should be): one line."""
    from hydra.errors import MissingConfigException

    from jl_lightning.apps import config

    monkeypatch.setattr(config, "CONFIG_DIR", str(tmp_path / "site-packages" / "jl_lightning" / "conf"))
    message = config.composition_error_message(MissingConfigException("Primary config directory not found."), "train")
    assert message.startswith(f"the configs are not at {tmp_path / 'site-packages' / 'jl_lightning' / 'conf'}")
    assert "reinstall" in message and "\n" not in message


def test_the_configs_are_found_through_the_package_not_the_checkout():
    """Hydra finds conf/ as the package jl_lightning.conf (its package search path), so an
    installed wheel needs no checkout (scripts/check_wheel.sh runs one in a clean venv in CI)."""
    from importlib.resources import files

    from jl_lightning.apps.config import CONFIG_PATH, compose

    assert CONFIG_PATH == "pkg://jl_lightning.conf"
    assert (files("jl_lightning.conf") / "train.yaml").is_file()
    assert compose(["experiment=paper"]).model.k == 30


@pytest.mark.slow
def test_the_wheel_ships_every_config(tmp_path):
    """Every YAML under conf/ is in the built wheel, under jl_lightning/conf/."""
    import zipfile

    root = Path(__file__).resolve().parents[1]
    had_build = (root / "build").exists()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(tmp_path),
            str(root),
        ],
        check=True,
        capture_output=True,
    )
    if not had_build:  # setuptools' scratch folder, not ours to leave in the checkout
        shutil.rmtree(root / "build", ignore_errors=True)
    (wheel,) = tmp_path.glob("jl_lightning-*.whl")
    shipped = {
        n.removeprefix("jl_lightning/conf/")
        for n in zipfile.ZipFile(wheel).namelist()
        if n.startswith("jl_lightning/conf/") and n.endswith(".yaml")
    }
    expected = {str(p.relative_to(root / "conf")) for p in (root / "conf").rglob("*.yaml")}
    assert expected and shipped == expected


def test_the_version_is_pyprojects():
    """summary.json and the estimator record jl_lightning.version's __version__, which the
    package root hands on: the one in pyproject.toml."""
    import re

    import jl_lightning
    from jl_lightning.version import __version__

    root = Path(__file__).resolve().parents[1]
    (declared,) = re.findall(r'^version = "(.+)"$', (root / "pyproject.toml").read_text(), re.M)
    assert __version__ == jl_lightning.__version__ == declared
