"""Every bad input and fault we know of, through the real entry points; the table goes to
docs/reliability.md.

    python scripts/bad_inputs.py              # all cases (about 10 minutes on 2 cores)
    python scripts/bad_inputs.py --quick      # without the 2000-step kill/signal-and-resume cases

Each case says what must happen: ``error`` (exit status 2, exactly one line on stderr,
nothing on stdout, no traceback, no run folder left behind), ``disk`` (a full disk mid-run:
exit status 1, one line, no summary.json or embedding.npy left), ``ok`` (exit status 0 and a
correct result, checked by the case) or ``custom`` (the case checks the process: a sweep
with one bad job). The script exits non-zero if any case fails.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
# the tests' KillAt callback on the path, and allowed as a target (lightning/targets.py)
TEST_ENV = {"PYTHONPATH": str(TESTS), "JL_EXTRA_TARGETS": "kill_at."}
REPORT = ROOT / "docs" / "reliability.md"
FAST = [
    "model.n_samples=4",
    "trainer.max_steps=20",
    "log_every=5",
    "logger=none",
    "baseline.draws=0",
    "~callbacks.model_checkpoint",
    "data.source.n=20",
    "data.source.d=12",
    "model.k=4",
]
FILE = [f for f in FAST if not f.startswith(("data.source", "model.k"))]


def run(
    module: str, *args: str, cwd: Path, env_extra: dict | None = None, file_limit: int | None = None
) -> subprocess.CompletedProcess:
    """``python -m module args`` as a user runs it; ``file_limit`` (bytes) stands in for a disk
    that fills up: writes past it fail (EFBIG), as they would with ENOSPC."""
    import resource

    env = dict(os.environ, **(env_extra or {}))
    if env_extra and "PYTHONPATH" in env_extra and os.environ.get("PYTHONPATH"):  # added to, not replaced
        env["PYTHONPATH"] = os.pathsep.join([env_extra["PYTHONPATH"], os.environ["PYTHONPATH"]])

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        preexec_fn=limit if file_limit else None,
    )


def verdict(kind: str, proc: subprocess.CompletedProcess, check=None) -> tuple[bool, str]:
    """(passed, what it printed) for an ``error`` or ``ok`` case."""
    if "Traceback" in proc.stderr:
        return False, "traceback: " + proc.stderr.strip().splitlines()[-1]
    if kind == "custom":  # the case checks the process itself
        return check(proc)
    if kind == "disk":  # a full disk mid-run: exit 1, one line, the folder incomplete (checked by the case)
        lines = proc.stderr.strip().splitlines()
        good = proc.returncode == 1 and len(lines) == 1 and (check is None or check() is None)
        return good, (lines[0] if lines else f"(no message, exit {proc.returncode})")
    if kind == "error":
        lines = proc.stderr.strip().splitlines()
        good = proc.returncode == 2 and len(lines) == 1 and proc.stdout == ""
        return good, (lines[0] if lines else f"(no message, exit {proc.returncode})")
    if proc.returncode != 0:
        return False, f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
    note = check() if check else "ok"
    return note is not None and not note.startswith("WRONG"), note or "WRONG: check failed"


def summary_check(run_dir: Path):
    def check():
        summary = json.loads((run_dir / "summary.json").read_text())
        eps = summary["best_distortion"]
        matrix = np.load(run_dir / "embedding.npy")
        if not (np.isfinite(matrix).all() and eps >= 0 and np.isfinite(eps)):
            return f"WRONG: epsilon {eps}, finite matrix {np.isfinite(matrix).all()}"
        return f"exported, epsilon {eps:.4g}" + ("" if summary["converged"] else " (NOT CONVERGED, said so)")

    return check


def cases(work: Path) -> list[tuple]:
    """(name, kind, module, args, cwd/env extras, check factory) for every case."""
    data = work / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 8))
    files = {}

    def save(name, array):
        np.save(data / name, array)
        files[name] = data / name

    bad = X.copy()
    bad[3, 2] = np.nan
    save("nan.npy", bad)
    bad = X.copy()
    bad[4, 0] = np.inf
    save("inf.npy", bad)
    bad = X.copy()
    bad[5] = 0
    save("zero_row.npy", bad)
    save("one_d.npy", X[0])
    os.symlink("loop.npy", data / "loop.npy")  # a link to itself
    save("empty.npy", np.empty((0, 8)))
    save("one_point.npy", X[:1])
    save("d1.npy", X[:, :1])
    save("ints.npy", (X * 10).astype(np.int64))
    save("half.npy", X.astype(np.float16))
    dup = X.copy()
    dup[7] = dup[8]
    save("duplicates.npy", dup)
    save("identical.npy", np.ones((10, 4)))
    for power in (-30, 19, 200):
        save(f"scaled_1e{power}.npy", X * 10.0**power)
    np.savez(data / "two.npz", a=X, b=X)
    import scipy.sparse

    sparse_rows = scipy.sparse.csr_matrix(X * (np.abs(X) > 0.5))
    scipy.sparse.save_npz(data / "sparse.npz", sparse_rows)
    with_nan = sparse_rows.copy()
    with_nan.data[with_nan.indptr[3]] = np.nan
    scipy.sparse.save_npz(data / "sparse_nan.npz", with_nan)
    np.savez(data / "sparse_broken.npz", data=sparse_rows.data, indices=sparse_rows.indices,
             indptr=sparse_rows.indptr[::-1], format="csr", shape=sparse_rows.shape)  # fmt: skip
    (data / "garbage.npy").write_bytes(b"not a numpy file at all")
    (data / "truncated.npy").write_bytes((data / "ints.npy").read_bytes()[:300])
    (data / "text.csv").write_text("1,5,3\n4,x,6\n")
    (data / "ragged.csv").write_text("1,5,3\n4,6\n")
    (data / "pandas.csv").write_text(
        "0,1,2\n" + "\n".join(",".join(f"{v:.6f}" for v in row) for row in X[:, :3]) + "\n"
    )
    np.save(data / "nan_matrix.npy", np.full((2, 8), np.nan))
    np.save(data / "matrix.npy", np.eye(2, 8))
    np.save(data / "huge.npy", np.full((3, 8), 1e200))
    np.save(data / "wrong_d.npy", np.ones((3, 5)))

    save("complex.npy", X.astype(np.complex128))
    torch_files(data, X)
    (data / "bom.csv").write_text("1.5,2,3\n4,5,6\n7,8,9\n", encoding="utf-8-sig")
    os.mkfifo(data / "pipe.npy")
    out = work / "runs"
    out.mkdir()
    counter = iter(range(1000))

    def train(kind, name, *args, check=True):
        run_dir = out / f"{next(counter)}"
        chk = summary_check(run_dir) if kind == "ok" and check else None
        return (name, kind, "jl_lightning.apps.train", (*args, f"hydra.run.dir={run_dir}"), {}, chk, run_dir)

    def file_run(kind, name, file, *args):
        return train(kind, name, *FILE, "data=file", f"data.source.path={data / file}", "model.k=2", *args)

    occupied = out / "occupied"
    occupied.mkdir()
    (occupied / "summary.json").write_text("{}")
    locked = out / "locked"
    locked.mkdir()
    (locked / ".jl_lock").write_text(json.dumps({"pid": os.getpid(), "host": os.uname().nodename}))
    embed_out = work / "embedded"
    embed_out.mkdir()
    (embed_out / "exists.npy").write_bytes(b"")
    return [
        file_run("error", "NaN row", "nan.npy"),
        file_run("error", "data.select_fraction out of [0, 1)", "ints.npy", "data.select_fraction=2"),
        file_run("error", "data.select_fraction leaves no training point", "ints.npy", "data.select_fraction=0.99"),
        file_run("error", "baseline.methods names an unknown method", "ints.npy", "baseline.methods=[numx]"),
        file_run("error", "Inf row", "inf.npy"),
        file_run("ok", "zero row (norms mode: warned, left out)", "zero_row.npy"),
        file_run("ok", "zero row (pairs mode: a point may be 0)", "zero_row.npy", "model.mode=pairs"),
        file_run("error", "1-D array", "one_d.npy"),
        file_run("error", "empty array", "empty.npy"),
        file_run("ok", "n = 1 (norms mode)", "one_point.npy"),
        file_run("error", "n = 1 (pairs mode)", "one_point.npy", "model.mode=pairs"),
        file_run("ok", "d = 1, k = 1", "d1.npy", "model.k=1"),
        file_run("error", "k = 0", "d1.npy", "model.k=0"),
        file_run("error", "k > d", "d1.npy", "model.k=3"),
        file_run("ok", "integer array", "ints.npy"),
        file_run("ok", "float16 array", "half.npy"),
        file_run("ok", "duplicate points (pairs mode: warned, left out)", "duplicates.npy", "model.mode=pairs"),
        file_run("error", "all points identical (pairs mode)", "identical.npy", "model.mode=pairs"),
        file_run("ok", "pairs mode, data scaled by 1e-30", "scaled_1e-30.npy", "model.mode=pairs"),
        file_run("ok", "pairs mode, data scaled by 1e19", "scaled_1e19.npy", "model.mode=pairs"),
        file_run("ok", "pairs mode, data scaled by 1e200", "scaled_1e200.npy", "model.mode=pairs"),
        file_run("ok", "norms mode, data scaled by 1e200", "scaled_1e200.npy"),
        file_run("error", ".npz with two arrays, no key", "two.npz"),
        file_run("ok", "scipy.sparse save_npz rows (pairs mode)", "sparse.npz", "model.mode=pairs"),
        file_run("error", "scipy.sparse rows with a NaN", "sparse_nan.npz", "model.mode=pairs"),
        file_run("error", "scipy.sparse .npz with inconsistent index arrays", "sparse_broken.npz"),
        file_run(
            "error", "scipy.sparse rows with data.center=true", "sparse.npz", "model.mode=pairs", "data.center=true"
        ),
        file_run("error", ".npz, a key it does not hold", "two.npz", "data.source.key=c"),
        file_run("error", "not a .npy file", "garbage.npy"),
        file_run("error", "truncated .npy", "truncated.npy"),
        file_run("error", "CSV cell that is not a number", "text.csv"),
        file_run("error", "ragged CSV", "ragged.csv"),
        file_run("ok", "CSV with pandas' 0,1,2 header", "pandas.csv"),
        file_run("error", "missing file", "nope.npy"),
        file_run("error", "a directory as the data file", ""),
        train("error", "data=file without a path", *FILE, "data=file"),
        train("error", "model.n_samples=0", *FAST, "model.n_samples=0"),
        train("error", "negative learning rate", *FAST, "optimizer.lr=-1"),
        train("error", "trainer.max_steps=0", *FAST, "trainer.max_steps=0"),
        train("error", "trainer.max_steps=-1", *FAST, "trainer.max_steps=-1"),
        train("error", "an option nothing reads (+ckpt_path=)", *FAST, "+ckpt_path=last.ckpt"),
        train("error", "model.mode=distances", *FAST, "model.mode=distances"),
        train("error", "model.init_mean=zeroes", *FAST, "model.init_mean=zeroes"),
        train("ok", "a run too short to converge", *FAST, "trainer.max_steps=3", "model.variance=log"),
        train(
            "error",
            "data=clusters, intrinsic_dim > d",
            *FAST,
            "data=clusters",
            "data.source.d=10",
            "data.source.intrinsic_dim=20",
            "model.k=2",
        ),
        train("error", "data=clusters, negative noise", *FAST, "data=clusters", "data.source.noise=-1", "model.k=2"),
        train(
            "error",
            "model.loss.active_refresh_growth=0.5",
            *FAST,
            "model.mode=pairs",
            "model.loss.active_refresh_growth=0.5",
        ),
        train("error", "model.loss.active_memory=-1", *FAST, "model.mode=pairs", "model.loss.active_memory=-1"),
        train(
            "error", "model.loss.active_candidates=many", *FAST, "model.mode=pairs", "model.loss.active_candidates=many"
        ),
        train("error", "model.loss.active_rescan=0", *FAST, "model.mode=pairs", "model.loss.active_rescan=0"),
        train(
            "error",
            "model.loss.active_refresh_extra=[-5]",
            *FAST,
            "model.mode=pairs",
            "model.loss.active_refresh_extra=[-5]",
        ),
        train("error", "baseline.budget_s=-1", *FAST, "baseline.budget_s=-1"),
        train("error", "baseline.budget_s=soon", *FAST, "baseline.budget_s=soon"),
        train("error", "callbacks.progress_log.every_fraction=0", *FAST, "callbacks.progress_log.every_fraction=0"),
        train("error", "model.subspace_penalty=-1", *FAST, "model.subspace_penalty=-1"),
        train("error", "model.subspace_energy=0", *FAST, "model.subspace_energy=0"),
        (
            "run folder holding an earlier run's results",
            "error",
            "jl_lightning.apps.train",
            (*FAST, f"hydra.run.dir={occupied}"),
            {},
            None,
            None,
        ),
        (
            "run folder locked by a live run",
            "error",
            "jl_lightning.apps.train",
            (*FAST, f"hydra.run.dir={locked}"),
            {},
            None,
            None,
        ),
        (
            "resume of a folder that is not a run",
            "error",
            "jl_lightning.apps.train",
            (f"resume={data}",),
            {},
            None,
            None,
        ),
        (
            "jl-embed: dimension mismatch",
            "error",
            "jl_lightning.apps.embed",
            (str(data / "matrix.npy"), str(data / "wrong_d.npy"), str(embed_out / "a.npy")),
            {},
            None,
            None,
        ),
        (
            "jl-embed: existing output",
            "error",
            "jl_lightning.apps.embed",
            (str(data / "matrix.npy"), str(data / "ints.npy"), str(embed_out / "exists.npy")),
            {},
            None,
            None,
        ),
        (
            "jl-embed: NaN matrix",
            "error",
            "jl_lightning.apps.embed",
            (str(data / "nan_matrix.npy"), str(data / "ints.npy"), str(embed_out / "b.npy")),
            {},
            None,
            None,
        ),
        (
            "jl-embed: .npz with two arrays, no --key",
            "error",
            "jl_lightning.apps.embed",
            (str(data / "matrix.npy"), str(data / "two.npz"), str(embed_out / "c.npy")),
            {},
            None,
            None,
        ),
        (
            "jl-embed: 1e200 input into float32",
            "error",
            "jl_lightning.apps.embed",
            (str(data / "matrix.npy"), str(data / "huge.npy"), str(embed_out / "d.npy")),
            {},
            None,
            None,
        ),
        (
            "jl-compare: unknown method",
            "error",
            "jl_lightning.apps.compare",
            ("compare.methods=[fjlt]", f"hydra.run.dir={out / 'cmp1'}"),
            {},
            None,
            out / "cmp1",
        ),
        (
            "jl-compare: compare.run is not a run",
            "error",
            "jl_lightning.apps.compare",
            (f"compare.run={data}", f"hydra.run.dir={out / 'cmp2'}"),
            {},
            None,
            out / "cmp2",
        ),
        (
            "jl-compare: compare.sweep holds no finished run",
            "error",
            "jl_lightning.apps.compare",
            (f"compare.sweep={data}", f"hydra.run.dir={out / 'cmp3'}"),
            {},
            None,
            out / "cmp3",
        ),
        (
            "jl-compare: compare.run and compare.sweep together",
            "error",
            "jl_lightning.apps.compare",
            (f"compare.run={data}", f"compare.sweep={data}", f"hydra.run.dir={out / 'cmp4'}"),
            {},
            None,
            out / "cmp4",
        ),
        # options read under their own names, nothing silently ignored
        train("error", "threads=0", *FAST, "threads=0"),
        train("error", "threads=-1", *FAST, "threads=-1"),
        train("error", "seed=abc", *FAST, "seed=abc"),
        train("error", "log_every=0", *FAST, "log_every=0"),
        train("error", "optimizer.lr=0 (can never train)", *FAST, "optimizer.lr=0"),
        file_run("error", "complex array", "complex.npy"),
        file_run("error", "data.source.key on a .npy", "ints.npy", "data.source.key=a"),
        file_run("error", "data.source.key on a plain-tensor .pt", "tensor.pt", "data.source.key=a"),
        file_run("error", ".pt holding a pickled object", "pickled.pt"),
        file_run("error", "sparse-tensor .pt", "sparse.pt"),
        file_run("error", "a named pipe as the data path (it used to hang)", "pipe.npy"),
        file_run("error", "a symbolic link loop as the data path", "loop.npy"),
        train("error", "a 5,000-character data path", *FILE, "data=file", f"data.source.path={'a' * 5000}.npy"),
        train(
            "error",
            "a data path holding = and , (unquoted)",
            *FILE,
            "data=file",
            f"data.source.path={data / 'a=1,b.npy'}",
            "model.k=2",
        ),
        (
            "a 300-character hydra.run.dir",
            "error",
            "jl_lightning.apps.train",
            (*FAST, f"hydra.run.dir={out / ('r' * 300)}"),
            {},
            None,
            None,  # a name the file system refuses: no folder can be left
        ),
        train(
            "error",
            "a character device as the data path",
            *FILE,
            "data=file",
            "data.source.path=/dev/zero",
            "model.k=2",
        ),
        train("error", "data.source.path='' (empty)", *FILE, "data=file", "data.source.path=", "model.k=2"),
        file_run("ok", "CSV with a UTF-8 byte-order mark", "bom.csv"),
        # Hydra's own errors
        train("error", "misspelt experiment", "experiment=paperr"),
        train("error", "misspelt config group option", "data=fil"),
        train("error", "unknown key model.kk=4", *FAST, "model.kk=4"),
        train(
            "error",
            "a data key the source does not take (+data.source.n on data=file)",
            *FILE,
            "data=file",
            f"data.source.path={data / 'ints.npy'}",
            "model.k=2",
            "+data.source.n=3",
        ),
        train(
            "ok",
            "experiment=clusters_1e5 composed with data=file",
            "experiment=clusters_1e5",
            *FILE,
            "data=file",
            f"data.source.path={data / 'ints.npy'}",
            "model.k=2",
            "data.val_fraction=0",
            "model.loss.active_candidates=50",
            "model.loss.active_hard=20",
            "model.loss.active_refresh_extra=[10]",
        ),
        # the file system says no
        (
            "hydra.run.dir under a file",
            "error",
            "jl_lightning.apps.train",
            (*FAST, f"hydra.run.dir={data / 'ints.npy'}/run"),
            {},
            None,
            None,
        ),
        (
            "hydra.run.dir in /proc",
            "error",
            "jl_lightning.apps.train",
            (*FAST, "hydra.run.dir=/proc/jl_bad_inputs"),
            {},
            None,
            None,
        ),
        (
            "hydra.run.dir in /sys",
            "error",
            "jl_lightning.apps.train",
            (*FAST, "hydra.run.dir=/sys/jl_bad_inputs"),
            {},
            None,
            None,
        ),
        full_disk_case(out),
        (
            "jl-embed: into /proc",
            "error",
            "jl_lightning.apps.embed",
            (str(data / "matrix.npy"), str(data / "ints.npy"), "/proc/jl_bad_inputs.npy"),
            {},
            None,
            None,
        ),
        (
            "jl-embed: onto a full disk (64 KB file-size limit)",
            "error",
            "jl_lightning.apps.embed",
            (str(data / "matrix.npy"), str(data / "many.npy"), str(embed_out / "full.npy")),
            {"file_limit": 65536},
            None,
            None,
        ),
        (
            "jl-embed: complex input",
            "error",
            "jl_lightning.apps.embed",
            (str(data / "matrix.npy"), str(data / "complex.npy"), str(embed_out / "e.npy")),
            {},
            None,
            None,
        ),
        (
            "jl-embed: --key on a .npy",
            "error",
            "jl_lightning.apps.embed",
            (str(data / "matrix.npy"), str(data / "ints.npy"), str(embed_out / "f.npy"), "--key", "a"),
            {},
            None,
            None,
        ),
        # damaged checkpoints, changed data
        *checkpoint_cases(work, out),
        # a sweep with one bad job
        sweep_case(out),
    ]


def torch_files(data: Path, X: np.ndarray) -> None:
    """A plain tensor, a pickled object and a sparse tensor, as .pt files; a long .npy for jl-embed."""
    import torch

    torch.save(torch.from_numpy(X), data / "tensor.pt")
    torch.save({"x": torch.from_numpy(X), "obj": Path("p")}, data / "pickled.pt")
    torch.save(torch.from_numpy(X).to_sparse(), data / "sparse.pt")
    np.save(data / "many.npy", np.ones((20000, 8)))


def full_disk_case(out: Path) -> tuple:
    """jl-train meets a full disk mid-run (a 40 KB file-size limit): one line, exit 1, no
    summary.json and no embedding.npy left."""
    run_dir = out / "full_disk"

    def check():
        left = [name for name in ("summary.json", "embedding.npy", ".jl_lock") if (run_dir / name).exists()]
        return f"WRONG: left {left}" if left else None

    return (
        "jl-train onto a full disk mid-run (40 KB file-size limit)",
        "disk",
        "jl_lightning.apps.train",
        ("debug=fast", "trainer.max_steps=200", f"hydra.run.dir={run_dir}"),
        {"file_limit": 40 * 1024},
        check,
        None,
    )


def checkpoint_cases(work: Path, out: Path) -> list[tuple]:
    """resume= of a run whose last.ckpt is truncated, garbage or another program's, and of a run
    whose data file changed since; jl-compare of a finished run whose data file changed."""
    import shutil

    import torch

    data = work / "data"
    np.save(data / "changing.npy", np.random.default_rng(1).standard_normal((20, 6)))
    base = out / "stopped_base"
    stopped = run(
        "jl_lightning.apps.train",
        *FILE,
        "data=file",
        f"data.source.path={data / 'changing.npy'}",
        "model.k=2",
        "trainer.max_steps=40",
        f"hydra.run.dir={base}",
        "+callbacks.kill._target_=kill_at.KillAt",
        "+callbacks.kill.step=15",
        "+callbacks.kill.signal=SIGTERM",
        cwd=work,
        env_extra=TEST_ENV,
    )
    finished = out / "finished_base"
    run(
        "jl_lightning.apps.train",
        *FILE,
        "data=file",
        f"data.source.path={data / 'changing.npy'}",
        "model.k=2",
        f"hydra.run.dir={finished}",
        cwd=work,
    )
    cases = []
    if stopped.returncode != 143:
        return [
            (
                "resume cases: a stopped run to damage",
                "error",
                "jl_lightning.apps.train",
                (f"resume={base}",),
                {},
                None,
                None,
            )
        ]
    good = (base / "checkpoints" / "last.ckpt").read_bytes()
    for name, content in (("truncated", good[: len(good) // 2]), ("garbage", b"not a checkpoint at all")):
        run_dir = out / f"resume_{name}"
        shutil.copytree(base, run_dir)
        (run_dir / "checkpoints" / "last.ckpt").write_bytes(content)
        cases.append(
            (
                f"resume= of a {name} last.ckpt",
                "error",
                "jl_lightning.apps.train",
                (f"resume={run_dir}",),
                {},
                None,
                None,
            )
        )
    run_dir = out / "resume_foreign"
    shutil.copytree(base, run_dir)
    torch.save({"state_dict": {"weight": torch.ones(2)}}, run_dir / "checkpoints" / "last.ckpt")
    cases.append(
        (
            "resume= of another program's last.ckpt",
            "error",
            "jl_lightning.apps.train",
            (f"resume={run_dir}",),
            {},
            None,
            None,
        )
    )
    unsummarized = out / "resume_unsummarized"
    shutil.copytree(finished, unsummarized)
    (unsummarized / "summary.json").unlink()
    cases.append(
        (
            "resume= of a finished run whose summary.json was deleted",
            "error",
            "jl_lightning.apps.train",
            (f"resume={unsummarized}",),
            {},
            None,
            None,
        )
    )
    pairs = out / "pairs_base"
    run(
        "jl_lightning.apps.train",
        *FILE,
        "data=file",
        f"data.source.path={data / 'changing.npy'}",
        "model.k=2",
        "model.mode=pairs",
        "trainer.max_steps=40",
        f"hydra.run.dir={pairs}",
        "+callbacks.kill._target_=kill_at.KillAt",
        "+callbacks.kill.step=15",
        "+callbacks.kill.signal=SIGTERM",
        cwd=work,
        env_extra=TEST_ENV,
    )
    mixed = out / "resume_other_mode"
    shutil.copytree(base, mixed)
    if (pairs / "checkpoints" / "last.ckpt").is_file():
        shutil.copyfile(pairs / "checkpoints" / "last.ckpt", mixed / "checkpoints" / "last.ckpt")
    cases.append(
        (
            "resume= of a norms run whose last.ckpt is a pairs run's",
            "error",
            "jl_lightning.apps.train",
            (f"resume={mixed}",),
            {},
            None,
            None,
        )
    )
    changed = out / "resume_changed"
    shutil.copytree(base, changed)
    X = np.load(data / "changing.npy")
    X[3, 2] += 1
    np.save(data / "changing.npy", X)  # from here on the file differs from what both runs trained on
    cases.append(
        (
            "resume= after the data file changed",
            "error",
            "jl_lightning.apps.train",
            (f"resume={changed}",),
            {},
            None,
            None,
        )
    )
    cases.append(
        (
            "jl-compare of a run whose data file changed",
            "error",
            "jl_lightning.apps.compare",
            (f"compare.run={finished}", f"hydra.run.dir={out / 'cmp_changed'}"),
            {},
            None,
            out / "cmp_changed",
        )
    )
    return cases


def sweep_case(out: Path) -> tuple:
    """A 3-job multirun whose middle job is bad: exit 2, one line naming it, no folder for it,
    the other two finished, no sweep lock, and the sweep summary lists the failure."""
    sweep = out / "sweep"

    def check(proc):
        lines = proc.stderr.strip().splitlines()
        if proc.returncode != 2 or len(lines) != 1:
            return False, f"exit {proc.returncode}, stderr {proc.stderr.strip()[-300:]!r}"
        summary = (
            json.loads((sweep / "sweep_summary.json").read_text())
            if (sweep / "sweep_summary.json").exists()
            else {"jobs": []}
        )
        failed = [row["job"] for row in summary["jobs"] if row.get("failed")]
        folders = {p.name.split("_", 1)[0]: p for p in sweep.iterdir() if p.is_dir()}
        good = (
            [name.split("_", 1)[0] for name in failed] == ["1"]
            and "1" not in folders
            and not (sweep / ".jl_lock").exists()
            and all(job in folders and (folders[job] / "summary.json").is_file() for job in ("0", "2"))
        )
        return good, lines[0] + ("" if good else f" (WRONG: failed {failed}, folders {sorted(os.listdir(sweep))})")

    return (
        "multirun with one bad job (model.k=2,0,3)",
        "custom",
        "jl_lightning.apps.train",
        ("-m", *FAST, "model.k=2,0,3", f"hydra.sweep.dir={sweep}"),
        {},
        check,
        None,
    )


def python_cases(work: Path) -> list[tuple[str, str, bool, str]]:
    """JLEmbedding's own refusals, in process: (case, call, passed, message)."""
    from jl_lightning import JLEmbedding
    from jl_lightning.errors import JLInputError

    np.savez(work / "e.npz", components=np.eye(2, 3), metadata=np.array("{}"))
    (work / "corrupt.npz").write_bytes(b"PK\x03\x04 broken")
    emb = JLEmbedding.load(work / "e.npz")
    out = []
    for name, call, fn in [
        ("transform of a NaN row", "emb.transform([[nan, 0, 0]])", lambda: emb.transform([[np.nan, 0, 0]])),
        ("load of a corrupt .npz", "JLEmbedding.load('corrupt.npz')", lambda: JLEmbedding.load(work / "corrupt.npz")),
        ("save into a missing folder", "emb.save('missing/e.npz')", lambda: emb.save(work / "missing" / "e.npz")),
    ]:
        try:
            fn()
            out.append((name, call, False, "no error"))
        except JLInputError as err:
            out.append((name, call, True, str(err).replace(str(work), "…")))
    big = JLEmbedding.from_matrix(np.eye(2, 3) * 10)
    X = np.random.default_rng(0).standard_normal((10, 3))
    np.save(work / "bare.npy", np.eye(2, 3))
    np.savez(work / "contradicts.npz", components=np.eye(2, 3), metadata=np.array(json.dumps({"n_features_in": 5})))
    for name, call, fn in [
        (
            "fit of complex input",
            "JLEmbedding(n_components=2).fit(X + 1j)",
            lambda: JLEmbedding(n_components=2, max_steps=2).fit(X + 1j),
        ),
        ("transform of complex input", "emb.transform(X + 1j)", lambda: emb.transform(X + 1j)),
        (
            "transform overflowing float32",
            "emb.transform(float32 1e38s) with a 10x matrix",
            lambda: big.transform(np.full((2, 3), 1e38, dtype=np.float32)),
        ),
        ("transform of a 1-D array", "emb.transform(x)", lambda: emb.transform(np.ones(3))),
        ("load of a bare .npy", "JLEmbedding.load('bare.npy')", lambda: JLEmbedding.load(work / "bare.npy")),
        (
            ".npz whose metadata contradicts its matrix",
            "JLEmbedding.load('contradicts.npz')",
            lambda: JLEmbedding.load(work / "contradicts.npz"),
        ),
        (
            "fit with mode='pair'",
            "JLEmbedding(mode='pair').fit(X)",
            lambda: JLEmbedding(n_components=2, mode="pair", max_steps=2).fit(X),
        ),
        ("save into /proc", "emb.save('/proc/e.npz')", lambda: emb.save("/proc/jl_bad_inputs.npz")),
    ]:
        try:
            fn()
            out.append((name, call, False, "no error"))
        except JLInputError as err:
            out.append((name, call, "\n" not in str(err), str(err).replace(str(work), "…")))
        except Exception as err:
            out.append((name, call, False, f"{type(err).__name__}: {err}"))
    Y = emb.transform(np.ones((2, 3), dtype=np.float32))
    out.append(("transform keeps float32", "emb.transform(float32 array)", Y.dtype == np.float32, f"dtype {Y.dtype}"))
    return out


def kill_resume_cases(work: Path, steps: int) -> list[tuple[str, bool, str]]:
    """Kill at 25/50/75 % of a run, resume; embedding.npy must equal the uninterrupted run's."""
    results = []
    env = TEST_ENV
    # norms with log sigma^2, which is still positive at the early kills; pairs with the raw one
    for mode, variance in (("norms", "log"), ("pairs", "raw")):
        common = [
            "debug=fast",
            "data.source.n=30",
            "data.source.d=40",
            f"model.mode={mode}",
            f"model.variance={variance}",
            f"trainer.max_steps={steps}",
            "log_every=50",
            "logger=none",
            "baseline.draws=3",
            f"callbacks.model_checkpoint.every_n_train_steps={steps // 20}",
        ]
        full_dir = work / f"full_{mode}"
        full = run("jl_lightning.apps.train", *common, f"hydra.run.dir={full_dir}", cwd=work)
        reference = np.load(full_dir / "embedding.npy") if full.returncode == 0 else None
        summary = json.loads((full_dir / "summary.json").read_text()) if full.returncode == 0 else {}
        for fraction in (0.25, 0.5, 0.75):
            kill = int(steps * fraction) + steps // 40  # between two checkpoints
            run_dir = work / f"killed_{mode}_{kill}"
            killed = run(
                "jl_lightning.apps.train",
                *common,
                f"hydra.run.dir={run_dir}",
                "+callbacks.kill._target_=kill_at.KillAt",
                f"+callbacks.kill.step={kill}",
                cwd=work,
                env_extra=env,
            )
            resumed = run("jl_lightning.apps.train", f"resume={run_dir}", cwd=work, env_extra=env)
            same = (
                reference is not None
                and killed.returncode == -9
                and resumed.returncode == 0
                and np.array_equal(np.load(run_dir / "embedding.npy"), reference)
            )
            switch = summary.get("switch_step")
            phase = "sigma^2 > 0" if switch is None or switch > kill else "sigma^2 = 0"
            results.append(
                (
                    f"{mode}, killed at step {kill} of {steps} ({phase} then), resumed",
                    same,
                    "identical embedding.npy"
                    if same
                    else f"killed exit {killed.returncode}, resumed exit {resumed.returncode}: "
                    f"{resumed.stderr.strip()[-200:]}",
                )
            )
    results += signal_cases(work, steps)
    return results


def signal_cases(work: Path, steps: int) -> list[tuple[str, bool, str]]:
    """SIGTERM at 10, 50 and 90 % of a pairs run (and SIGINT at 50 %), then resume=: exit 143
    (130), one line, and embedding.npy identical to the uninterrupted run."""
    env = TEST_ENV
    common = [
        "debug=fast",
        "data.source.n=30",
        "data.source.d=40",
        "model.mode=pairs",
        f"trainer.max_steps={steps}",
        "log_every=50",
        "logger=none",
        "baseline.draws=3",
        "model.loss.active_candidates=200",
        "model.loss.active_rescan=7",
        "model.loss.active_hard=20",
    ]
    full_dir = work / "signal_full"
    full = run("jl_lightning.apps.train", *common, f"hydra.run.dir={full_dir}", cwd=work)
    reference = np.load(full_dir / "embedding.npy") if full.returncode == 0 else None
    results = []
    for name, fraction in (("SIGTERM", 0.1), ("SIGTERM", 0.5), ("SIGTERM", 0.9), ("SIGINT", 0.5)):
        step = int(steps * fraction) + 3  # not a multiple of any period: between checkpoints, passes, rescans
        run_dir = work / f"signal_{name}_{step}"
        stopped = run(
            "jl_lightning.apps.train",
            *common,
            f"hydra.run.dir={run_dir}",
            "+callbacks.kill._target_=kill_at.KillAt",
            f"+callbacks.kill.step={step}",
            f"+callbacks.kill.signal={name}",
            cwd=work,
            env_extra=env,
        )
        resumed = run("jl_lightning.apps.train", f"resume={run_dir}", cwd=work, env_extra=env)
        code = {"SIGTERM": 143, "SIGINT": 130}[name]
        one_line = len(stopped.stderr.strip().splitlines()) == 1
        same = (
            reference is not None
            and stopped.returncode == code
            and one_line
            and resumed.returncode == 0
            and np.array_equal(np.load(run_dir / "embedding.npy"), reference)
        )
        results.append(
            (
                f"pairs, {name} at step {step} of {steps}, resumed",
                same,
                f"exit {stopped.returncode}, one line: {stopped.stderr.strip()[:90].replace(str(work), '…')}…;"
                " identical embedding.npy"
                if same
                else f"stopped exit {stopped.returncode} ({stopped.stderr.strip()[-200:]}), resumed exit "
                f"{resumed.returncode}: {resumed.stderr.strip()[-200:]}",
            )
        )
    return results


def scale_cases(work: Path, steps: int = 1000) -> list[tuple[str, bool, str]]:
    """Pairs mode on digits scaled by 1e-30, 1, 1e30 and 1e150: the same epsilon to 1e-6 relative."""
    from sklearn.datasets import load_digits

    digits = load_digits().data.astype(np.float64)
    eps = {}
    for scale in (1e-30, 1.0, 1e30, 1e150):
        np.save(work / f"digits_{scale:g}.npy", digits * scale)
        run_dir = work / f"digits_run_{scale:g}"
        proc = run(
            "jl_lightning.apps.train",
            "data=file",
            f"data.source.path={work / f'digits_{scale:g}.npy'}",
            "model.mode=pairs",
            "model.k=16",
            "model.loss.active_hard=8192",
            "model.loss.smooth_temperature=0.1",
            "optimizer.lr=0.02",
            f"trainer.max_steps={steps}",
            "logger=none",
            "baseline.draws=0",
            "~callbacks.model_checkpoint",
            f"hydra.run.dir={run_dir}",
            cwd=work,
        )
        eps[scale] = (
            json.loads((run_dir / "summary.json").read_text())["best_distortion"] if proc.returncode == 0 else None
        )
    base = eps[1.0]
    return [
        (
            f"pairs mode on digits x {scale:g}, {steps} steps",
            e is not None and base is not None and abs(e - base) <= 1e-6 * base,
            f"epsilon {e!r} (x 1: {base!r})",
        )
        for scale, e in eps.items()
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the kill-and-resume cases")
    parser.add_argument("--steps", type=int, default=2000, help="steps of the kill-and-resume runs")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows, failures = [], 0
    with tempfile.TemporaryDirectory(prefix="jl_bad_inputs_") as tmp:
        work = Path(tmp)
        for name, kind, module, case_args, extras, check, run_dir in cases(work):
            proc = run(
                module,
                *case_args,
                cwd=work,
                file_limit=extras.get("file_limit"),
                env_extra=TEST_ENV,
            )
            passed, message = verdict(kind, proc, check)
            if kind == "error" and run_dir is not None and run_dir.exists() and not run_dir.name == "occupied":
                passed, message = False, f"left a run folder behind: {message}"
            failures += not passed
            command = " ".join(["jl-" + module.rsplit(".", 1)[1], *case_args])
            rows.append(
                (name, command.replace(str(work), "…"), proc.returncode, message.replace(str(work), "…"), passed)
            )
            print(f"{'pass' if passed else 'FAIL'}  {name}: {message[:150]}", flush=True)
        for name, call, passed, message in python_cases(work):
            failures += not passed
            rows.append((name, call, "-", message, passed))
            print(f"{'pass' if passed else 'FAIL'}  {name}: {message[:150]}", flush=True)
        resumes = [] if args.quick else scale_cases(work) + kill_resume_cases(work, args.steps)
        for name, passed, message in resumes:
            failures += not passed
            print(f"{'pass' if passed else 'FAIL'}  {name}: {message}", flush=True)
    command = "python scripts/bad_inputs.py " + " ".join(sys.argv[1:])
    lines = [
        "# Reliability",
        "",
        "Every bad input and fault we know of, through the real entry points. `error`: exit status 2, "
        "one line on stderr, nothing on stdout, no traceback, no run folder left behind; `disk`: a full "
        "disk mid-run, exit status 1, one line, no summary.json or embedding.npy left (the run resumes "
        "once there is space); `custom`: checked by the case (a sweep with one bad job); `ok`: a "
        "correct result (finite matrix, epsilon >= 0, an unconverged run says so).",
        "",
        f"- command: `{command.strip()}`",
        f"- date: {dt.date.today().isoformat()}; machine: "
        f"{os.uname().machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}",
        f"- result: {len(rows) + len(resumes) - failures} of {len(rows) + len(resumes)} cases pass",
        "",
        "| case | command | exit | what it printed | pass |",
        "|---|---|---|---|---|",
    ]
    for name, command, code, message, passed in rows:
        cell = message.replace("|", "\\|")
        lines.append(f"| {name} | `{command}` | {code} | {cell} | {'yes' if passed else '**no**'} |")
    if resumes:
        lines += [
            "",
            "Scale invariance (digits, `data=file` of the scaled array); kill (SIGKILL) or stop "
            "(SIGTERM, SIGINT) then `jl-train resume=RUN_DIR`:",
            "",
            "| case | result | pass |",
            "|---|---|---|",
        ]
        lines += [f"| {name} | {message} | {'yes' if passed else '**no**'} |" for name, passed, message in resumes]
    text = "\n".join(lines) + "\n"
    if not args.no_write:
        REPORT.write_text(text)
        print(f"wrote {REPORT}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
