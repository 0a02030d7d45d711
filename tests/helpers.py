"""What several test files need, written once: the default loss from the YAML, and the
brute-force references the fast code is compared against."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from jl_lightning.apps.config import compose
from jl_lightning.core.losses import loss_options, make_loss


def default_loss(**overrides):
    """The loss ``jl-train`` builds from conf/model/sampler.yaml, with ``overrides`` (model.* names)."""
    from omegaconf import OmegaConf

    model = OmegaConf.to_container(compose().model, resolve=True)
    model.update(overrides)
    return make_loss(**loss_options(model))


def pair_deviations(A, X) -> np.ndarray:
    """|‖A(x_i − x_j)‖² / ‖x_i − x_j‖² − 1| for every pair i < j with x_i ≠ x_j, one by one in
    float64: the reference for every tiled, screened or distributed pairs pass."""
    A, X = np.asarray(A, dtype=np.float64), np.asarray(X, dtype=np.float64)
    out = []
    for i, j in combinations(range(len(X)), 2):
        diff = X[i] - X[j]
        norm = diff @ diff
        if norm > 0:
            out.append(abs((A @ diff) @ (A @ diff) / norm - 1))
    return np.array(out)


def pair_distortion(A, X) -> float:
    """The max of :func:`pair_deviations`: a map's worst-case epsilon over all pairs."""
    return float(pair_deviations(A, X).max())
