"""What a learned matrix is measured against: random maps (Gaussian, Rademacher, sparse,
SRHT), PCA and NuMax (one registry, ``registry.py``)."""

from jl_lightning.baselines.random_maps import (
    SRHT,
    fwht,
    gaussian_matrix,
    rademacher_matrix,
    sparse_density,
    sparse_matrix,
)
from jl_lightning.baselines.references import (
    REFERENCE_METHODS,
    best_scale,
    pca_baseline,
    random_draws,
    reference_figures,
    reference_scalars,
)
from jl_lightning.baselines.registry import (
    RANDOM_METHODS,
    REFERENCES,
    check_methods,
    pca_matrix,
    random_map,
)

__all__ = [
    "RANDOM_METHODS",
    "REFERENCES",
    "REFERENCE_METHODS",
    "SRHT",
    "best_scale",
    "check_methods",
    "fwht",
    "gaussian_matrix",
    "pca_baseline",
    "pca_matrix",
    "rademacher_matrix",
    "random_draws",
    "random_map",
    "reference_figures",
    "reference_scalars",
    "sparse_density",
    "sparse_matrix",
]
