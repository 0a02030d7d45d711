"""The run folder: what a run leaves, written atomically and never over an earlier run.

One list of result files (:data:`RESULT_FILES`), one freshness check (:func:`occupied`,
:func:`check_fresh`), one atomic writer (:func:`atomic_write`): jl-train, jl-compare,
jl-embed, ``JLEmbedding.save``, the sweep summary and the Hydra run guard all use them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import numpy as np

from jl_lightning.errors import check_finite_matrix
from jl_lightning.sparse_rows import SparseRows

# what a finished jl-train or jl-compare run leaves
RESULT_FILES = ("embedding.npy", "summary.json", "comparison.csv", "comparison.md", "comparison.png")


def occupied(folder: str | Path) -> list[str]:
    """The result files of an earlier run that ``folder`` holds."""
    return [name for name in RESULT_FILES if (Path(folder) / name).exists()]


RANK_VARIABLES = ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
# set per node by a scheduler that starts one process per node (Lightning's "general purpose
# cluster": NODE_RANK, MASTER_ADDR, MASTER_PORT, WORLD_SIZE; torchrun's GROUP_RANK), and per
# process by Lightning's launcher inside a node
NODE_VARIABLES = ("NODE_RANK", "GROUP_RANK")


def process_rank() -> int:
    """This process's global rank in a distributed run, from the launcher's environment
    (Lightning's DDP launcher, torchrun, SLURM, a scheduler's NODE_RANK), as Lightning reads
    it: 0 for the one process of an ordinary run and for the first process of the first node
    only. Only rank 0 guards and writes the run folder. Where only the node's and the local
    rank are known (before Lightning sets RANK), a positive number stands for any other rank."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name)
        if value is not None and value.strip().isdigit():
            return int(value)
    local = os.environ.get("LOCAL_RANK", "0").strip()
    node = next((os.environ[name].strip() for name in NODE_VARIABLES if name in os.environ), "0")
    local, node = (int(v) if v.isdigit() else 0 for v in (local, node))
    return local + node * int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1) if node else local


def check_fresh(run_dir: str | Path) -> None:
    """Refuse to run where an earlier run already left its results."""
    found = occupied(run_dir)
    if found:
        raise FileExistsError(
            f"{run_dir} already holds results of an earlier run ({', '.join(found)}); "
            "refusing to overwrite them. Choose another hydra.run.dir."
        )


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Delete the temporaries that killed writers of ``path`` left beside it
    (``.NAME.PID.*.tmp`` whose process is gone); returns what was removed."""
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        parts = tmp.name[len(path.name) + 2 :].split(".")
        if parts and parts[0].isdigit() and not _pid_alive(int(parts[0])):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def atomic_write(path: Path, write, mode: str = "wb") -> None:
    """Write ``path`` through ``write(handle)`` into a temporary file beside it, then rename it
    into place; never over a file that exists by then, and no temporary left on failure or on
    an interruption that Python sees (Ctrl-C; SIGTERM where the entry point turns it into an
    exit). The file gets the permissions of the user's umask (usually 0644), not mkstemp's 0600."""
    path = Path(path)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            raise FileExistsError(f"{path} appeared while this run was writing; not overwriting it")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_results(run_dir: str | Path, embedding: np.ndarray, summary: dict) -> dict[str, Path]:
    """Write ``embedding.npy`` (float64, shape (k, d)) and then ``summary.json``.

    summary.json is written last: a run folder is complete exactly when it exists.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    check_fresh(run_dir)
    paths = {name: run_dir / name for name in ("embedding.npy", "summary.json")}
    check_finite_matrix(embedding, f"{paths['embedding.npy']} (not written)")
    array = np.ascontiguousarray(embedding, dtype=np.float64)
    atomic_write(paths["embedding.npy"], lambda h: np.save(h, array, allow_pickle=False))
    text = json.dumps(summary, indent=2, sort_keys=False, default=_jsonable).encode() + b"\n"
    atomic_write(paths["summary.json"], lambda h: h.write(text))
    return paths


def fingerprint(points: np.ndarray) -> str:
    """sha256 of the training points as float64 (shape included): which data a matrix was learned
    on. Sparse rows hash their shape and canonical CSR arrays (sorted indices, no explicit zeros)."""
    if isinstance(points, SparseRows):
        matrix = points.matrix.astype(np.float64)
        digest = hashlib.sha256(f"sparse{points.shape}".encode())
        for part in (matrix.indptr.astype(np.int64), matrix.indices.astype(np.int64), matrix.data):
            digest.update(np.ascontiguousarray(part).tobytes())
        return "sha256:" + digest.hexdigest()
    array = np.ascontiguousarray(points, dtype=np.float64)
    digest = hashlib.sha256(str(array.shape).encode())
    digest.update(array.tobytes())
    return "sha256:" + digest.hexdigest()


def _jsonable(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


# ------------------------------------------------------------------ one run per folder
LOCK_NAME = ".jl_lock"
# what any earlier run (finished, killed or refused after Hydra started) leaves in its folder
EARLIER_RUN_MARKERS = (".hydra", "checkpoints", "tensorboard", "csv", LOCK_NAME) + RESULT_FILES


def earlier_run_files(folder: str | Path) -> list[str]:
    """The names in ``folder`` that an earlier run left (results, config, checkpoints, logs, a lock)."""
    folder = Path(folder)
    return [name for name in EARLIER_RUN_MARKERS if (folder / name).exists()]


def read_lock(folder: str | Path) -> dict | None:
    try:
        return json.loads((Path(folder) / LOCK_NAME).read_text())
    except (OSError, ValueError):
        return None


def lock_is_stale(lock: dict | None) -> bool:
    """A lock of a run on this host whose process is gone (or an unreadable lock)."""

    if lock is None:
        return True
    return lock.get("host") == socket.gethostname() and not _pid_alive(int(lock.get("pid", -1)))


def take_lock(folder: str | Path, takeover: bool = False, extra: dict | None = None) -> None:
    """Create ``folder`` if needed and its lock file exclusively (O_EXCL), holding this process's
    pid, the host, whether this run created the folder and ``extra`` (the SLURM job and its
    restart count under SLURM). With ``takeover``, a stale lock (a dead run's) is replaced.
    Raises FileExistsError when another live run holds the folder."""

    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock_path = folder / LOCK_NAME
    if takeover and lock_path.exists() and lock_is_stale(read_lock(folder)):
        lock_path.unlink()
    try:
        fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666 & ~_umask())
    except FileExistsError:
        lock = read_lock(folder) or {}
        raise FileExistsError(
            f"{folder} is in use by another run (pid {lock.get('pid')} on {lock.get('host')}); "
            "choose another hydra.run.dir"
        ) from None
    with os.fdopen(fd, "w") as handle:
        json.dump(
            {"pid": os.getpid(), "host": socket.gethostname(), "created_folder": created, **(extra or {})}, handle
        )


def release_lock(folder: str | Path, abandon: bool = False) -> None:
    """Remove this process's lock. With ``abandon`` (a refused or failed run), also remove the
    folder when this run created it, so a refused run leaves nothing behind."""

    folder = Path(folder)
    lock = read_lock(folder)
    if lock is None or lock.get("pid") != os.getpid():
        return
    (folder / LOCK_NAME).unlink(missing_ok=True)
    if abandon and lock.get("created_folder") and not (folder / "checkpoints").exists():
        shutil.rmtree(folder, ignore_errors=True)
