"""The run folder: what a run leaves, written atomically and never over an earlier run.

One list of result files (:data:`RESULT_FILES`), one freshness check (:func:`occupied`,
:func:`check_fresh`), one atomic writer (:func:`atomic_write`): jl-train, jl-compare,
jl-embed, ``JLEmbedding.save``, the sweep summary and the Hydra run guard all use them.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

# what a finished jl-train or jl-compare run leaves
RESULT_FILES = ("embedding.npy", "summary.json", "comparison.csv", "comparison.md", "comparison.png")


def occupied(folder: str | Path) -> list[str]:
    """The result files of an earlier run that ``folder`` holds."""
    return [name for name in RESULT_FILES if (Path(folder) / name).exists()]


def check_fresh(run_dir: str | Path) -> None:
    """Refuse to run where an earlier run already left its results."""
    found = occupied(run_dir)
    if found:
        raise FileExistsError(
            f"{run_dir} already holds results of an earlier run ({', '.join(found)}); "
            "refusing to overwrite them. Choose another hydra.run.dir."
        )


def atomic_write(path: Path, write, mode: str = "wb") -> None:
    """Write ``path`` through ``write(handle)`` into a temporary file beside it, then rename it
    into place; never over a file that exists by then, and no temporary left on failure."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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
    array = np.ascontiguousarray(embedding, dtype=np.float64)
    atomic_write(paths["embedding.npy"], lambda h: np.save(h, array, allow_pickle=False))
    text = json.dumps(summary, indent=2, sort_keys=False, default=_jsonable).encode() + b"\n"
    atomic_write(paths["summary.json"], lambda h: h.write(text))
    return paths


def fingerprint(points: np.ndarray) -> str:
    """sha256 of the training points as float64 (shape included): which data a matrix was learned on."""
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
