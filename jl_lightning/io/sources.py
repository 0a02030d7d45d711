"""Where points come from: every ``data.source``, in one file.

A source is any object with ``load() -> np.ndarray`` and a ``name`` used in
error messages. Hydra builds one from ``conf/data/*.yaml`` (``data.source``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jl_lightning.constraints import NON_NEGATIVE, POSITIVE, POSITIVE_INT, check
from jl_lightning.core.trap import trap_points
from jl_lightning.errors import JLInputError
from jl_lightning.io.clusters import generate_clusters
from jl_lightning.io.loading import load_points
from jl_lightning.sparse_rows import SparseRows, is_sparse


def _positive(option: str, value, integer: bool = True) -> None:
    """Refuse ``data.source.<option>`` unless it is a positive integer (or number)."""
    check(f"data.source.{option}", value, POSITIVE_INT if integer else POSITIVE)


@dataclass
class GaussianPoints:
    """n points with i.i.d. N(0, 1) coordinates in d dimensions (the paper's Appendix B data).

    They are normalized to unit norm by the DataModule (``data.normalize``).
    """

    n: int
    d: int
    seed: int = 0

    @property
    def name(self) -> str:
        return f"synthetic Gaussian data (data.source.n={self.n}, data.source.d={self.d})"

    def load(self) -> np.ndarray:
        for option in ("n", "d"):
            _positive(option, getattr(self, option))
        return np.random.default_rng(self.seed).standard_normal((self.n, self.d))


@dataclass
class ClustersPoints:
    """Clustered points of low intrinsic dimension (``io/clusters.py`` has the model):
    ``clusters`` clusters, each spread over ``intrinsic_dim`` directions by ``spread``,
    plus isotropic ``noise``; unit norm with ``unit_norm``. With ``cache_dir`` the points
    are written once to a float32 .npy there and memory-mapped."""

    n: int
    d: int
    clusters: int = 64
    intrinsic_dim: int = 8
    spread: float = 0.5
    noise: float = 0.05
    unit_norm: bool = True
    seed: int = 0
    cache_dir: str | None = None

    @property
    def name(self) -> str:
        return (
            f"clustered data (data.source.n={self.n}, d={self.d}, clusters={self.clusters}, "
            f"intrinsic_dim={self.intrinsic_dim})"
        )

    def load(self) -> np.ndarray:
        for option in ("n", "d", "clusters", "intrinsic_dim"):
            _positive(option, getattr(self, option))
        _positive("spread", self.spread, integer=False)
        check("data.source.noise", self.noise, NON_NEGATIVE)
        if self.intrinsic_dim > self.d:
            raise JLInputError(f"data.source.intrinsic_dim must be <= data.source.d={self.d}, got {self.intrinsic_dim}")
        return generate_clusters(
            self.n,
            self.d,
            self.clusters,
            self.intrinsic_dim,
            float(self.spread),
            float(self.noise),
            bool(self.unit_norm),
            int(self.seed),
            self.cache_dir,
        )


@dataclass
class FilePoints:
    """Points read from a .npy, .npz (``key``), .pt, .csv (``header``) or .parquet file."""

    path: str
    key: str | None = None
    # .csv: auto (a first line without numbers, or of column indices 0..d-1 / 1..d, is a header) | true | false
    header: str | bool = "auto"

    @property
    def name(self) -> str:
        return str(self.path)

    def load(self) -> np.ndarray:
        return load_points(self.path, self.key, self.header)


@dataclass
class DigitsPoints:
    """scikit-learn's bundled handwritten digits: 1797 images of 8 x 8 pixels, d = 64.

    Shipped inside scikit-learn (no download); install it with ``pip install -e '.[examples]'``.
    Pixel values 0..16, as float64.
    """

    @property
    def name(self) -> str:
        return "scikit-learn digits (data=digits)"

    def load(self) -> np.ndarray:
        try:
            # lazy: scikit-learn is optional (data=digits)
            from sklearn.datasets import load_digits  # noqa: PLC0415
        except ImportError:
            raise JLInputError(
                "data=digits needs scikit-learn, which ships the dataset: "
                "pip install -e '.[examples]' (or pip install scikit-learn)"
            ) from None
        return load_digits().data.astype(np.float64)


@dataclass
class ArrayPoints:
    """Points already in memory (``JLEmbedding.fit(X)`` uses this): an array, or scipy.sparse
    rows (kept sparse)."""

    array: np.ndarray
    label: str = "the array passed to fit()"

    @property
    def name(self) -> str:
        return self.label

    def load(self):
        return SparseRows(self.array) if is_sparse(self.array) else np.asarray(self.array)


@dataclass
class TrapPoints:
    """Theorem 1's dataset (``data=theorem1``, see ``core/trap.py``): d = k + 1."""

    k: int
    scale: float = 2.0
    distortion: float = 0.5

    @property
    def name(self) -> str:
        return f"Theorem 1's trap data (data.source.k={self.k})"

    def load(self) -> np.ndarray:
        return trap_points(self.k, self.scale, self.distortion)
