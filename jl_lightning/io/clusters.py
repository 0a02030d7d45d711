"""Clustered points of low intrinsic dimension, generated in chunks, optionally into a memory-mapped file.

Real embedding sets (sentence embeddings, image features) are not uniform Gaussian
clouds: they gather in clusters, each spread over a few directions. That is the hard
case for random maps and the case a learned map can exploit, so it is the test at scale.

Point p of cluster c is

    x_p = mu_c + U_c z_p + noise g_p / sqrt(d),

with centers mu_c ~ N(0, I_d / d) (norm about 1), an orthonormal basis U_c (d x r) per
cluster (r = ``intrinsic_dim``), z_p ~ N(0, spread^2 I_r / r) (norm about ``spread``) and
g_p ~ N(0, I_d). Cluster labels are uniform. ``unit_norm`` rescales every point to norm 1
(sentence embeddings usually are).

Rows are generated in chunks of ``CHUNK_ROWS``, each from its own seeded generator, so
the points depend on the seed and the parameters only (never on memory or chunking), and
n = 10^6 takes seconds and one chunk of memory. With a ``cache_dir`` the points go into a
float32 ``.npy`` file named by their parameters and are loaded memory-mapped; a later run
with the same parameters reuses it. The file is written whole under a temporary name and
renamed, so a half-written file is never read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from jl_lightning.io.run_folder import atomic_write

CHUNK_ROWS = 65536


def cluster_model(d: int, clusters: int, intrinsic_dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(centers (c, d), bases (c, d, r)) of the clusters, from the seed alone."""
    rng = np.random.default_rng([seed, 0])
    centers = rng.standard_normal((clusters, d)) / np.sqrt(d)
    bases = np.linalg.qr(rng.standard_normal((clusters, d, intrinsic_dim)))[0]
    return centers, bases


def cluster_chunk(
    index: int,
    rows: int,
    centers: np.ndarray,
    bases: np.ndarray,
    spread: float,
    noise: float,
    unit_norm: bool,
    seed: int,
) -> np.ndarray:
    """Rows index * CHUNK_ROWS ... of the data set, float32."""
    rng = np.random.default_rng([seed, 1, index])
    clusters, d, r = bases.shape
    labels = rng.integers(0, clusters, rows)
    z = rng.standard_normal((rows, r)) * (spread / np.sqrt(r))
    points = rng.standard_normal((rows, d)) * (noise / np.sqrt(d))
    points += centers[labels]
    for c in range(clusters):  # one GEMM per cluster rather than a (rows, d, r) gather
        members = np.flatnonzero(labels == c)
        points[members] += z[members] @ bases[c].T
    if unit_norm:
        points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32)


def generate_clusters(
    n: int,
    d: int,
    clusters: int,
    intrinsic_dim: int,
    spread: float,
    noise: float,
    unit_norm: bool,
    seed: int,
    cache_dir: str | None = None,
) -> np.ndarray:
    """The (n, d) float32 points: in memory, or memory-mapped from ``cache_dir``."""
    centers, bases = cluster_model(d, clusters, intrinsic_dim, seed)
    chunks = range(0, n, CHUNK_ROWS)

    def chunk(start: int) -> np.ndarray:
        return cluster_chunk(
            start // CHUNK_ROWS, min(CHUNK_ROWS, n - start), centers, bases, spread, noise, unit_norm, seed
        )

    if cache_dir is None:
        return np.concatenate([chunk(start) for start in chunks])
    params = dict(
        n=n,
        d=d,
        clusters=clusters,
        intrinsic_dim=intrinsic_dim,
        spread=spread,
        noise=noise,
        unit_norm=unit_norm,
        seed=seed,
        version=1,
    )
    tag = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"clusters-n{n}-d{d}-{tag}.npy"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(handle) -> None:
            np.lib.format.write_array_header_1_0(
                handle, {"descr": np.dtype(np.float32).str, "fortran_order": False, "shape": (n, d)}
            )
            for start in chunks:
                handle.write(chunk(start).tobytes())

        try:
            atomic_write(path, write)
        except FileExistsError:  # another run wrote the same points first
            pass
    return np.load(path, mmap_mode="r")
