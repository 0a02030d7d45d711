"""What several test files need, written once: the default loss from the YAML, and the
brute-force references the fast code is compared against."""

from __future__ import annotations

import numpy as np

from jl_lightning.apps.config import compose
from jl_lightning.core.losses import loss_options, make_loss


def loss_node(*, plan_for: tuple[str, int, int] = ("pairs", 1000, 5000), **overrides) -> dict:
    """conf/model/sampler.yaml's ``loss`` node as a dict, its ``auto`` values resolved as a fit of
    ``plan_for`` = (mode, n, steps) resolves them (``core/plan.py``), with ``overrides``."""
    from omegaconf import OmegaConf

    from jl_lightning.core.plan import choose, resolve

    mode, n, steps = plan_for
    node = OmegaConf.to_container(compose().model.loss, resolve=True)
    resolved, _ = resolve(node, choose(mode=mode, n=n, d=1, k=1, steps=steps))
    return {**resolved, **overrides}


def default_loss(mode: str = "norms", **overrides):
    """The loss ``jl-train`` builds from conf/model/sampler.yaml, with ``overrides`` (``model.loss.*`` names)."""
    return make_loss(mode=mode, **loss_options(loss_node(**overrides)))


def sampler(**options):
    """A GaussianSampler from ``options``: the loss's options (``model.loss.*`` names) go into its
    ``loss`` node, the YAML's for the rest; everything else is the sampler's own."""
    from jl_lightning.core.losses import LOSS_PARAMETERS
    from jl_lightning.lightning.sampler import GaussianSampler

    loss = {name: options.pop(name) for name in list(options) if name in LOSS_PARAMETERS}
    return GaussianSampler(loss=loss_node(**loss), **options)


def pair_ratios(A, X, other=None, zero_rtol: float = 0.0):
    """‖A v‖² / ‖v‖² of every difference vector v = x_i − x_j, formed explicitly in float64:
    the reference for every tiled, screened or distributed pairs pass. Pairs i < j of ``X``, or
    every (i, j) of ``X`` × ``other``. A pair with ‖v‖² <= zero_rtol (‖x_i‖² + ‖x_j‖²) (at the
    default 0: x_i = x_j) is left out. Returns (ratios, i, j, number left out)."""
    A, X = np.asarray(A, dtype=np.float64), np.asarray(X, dtype=np.float64)
    if other is None:
        i, j = np.triu_indices(len(X), 1)
        Y = X
    else:
        Y = np.asarray(other, dtype=np.float64)
        i, j = (g.ravel() for g in np.meshgrid(np.arange(len(X)), np.arange(len(Y)), indexing="ij"))
    diff = X[i] - Y[j]
    dx = (diff**2).sum(1)
    keep = dx > zero_rtol * ((X[i] ** 2).sum(1) + (Y[j] ** 2).sum(1))
    ratios = ((diff[keep] @ A.T) ** 2).sum(1) / dx[keep]
    return ratios, i[keep], j[keep], int((~keep).sum())


def pair_deviations(A, X, other=None, zero_rtol: float = 0.0) -> np.ndarray:
    """|ratio − 1| of every pair of :func:`pair_ratios`."""
    return np.abs(pair_ratios(A, X, other, zero_rtol)[0] - 1)


def pair_distortion(A, X) -> float:
    """The max of :func:`pair_deviations`: a map's worst-case epsilon over all pairs."""
    return float(pair_deviations(A, X).max())


def job_dirs(sweep, num: int) -> list:
    """The folders of job ``num`` in a multirun's ``sweep`` folder: ``<num>_<its overrides>``
    or ``<num>`` (conf/hydra/default.yaml). One for a job that ran, none for a refused one."""
    from pathlib import Path

    return [p for p in Path(sweep).iterdir() if p.is_dir() and p.name.split("_", 1)[0] == str(num)]


def job_dir(sweep, num: int):
    """The one folder of job ``num`` (asserted to be exactly one)."""
    found = job_dirs(sweep, num)
    assert len(found) == 1, f"job {num}: folders {found}"
    return found[0]


# a pairs run small enough for a subprocess test, with candidates rescanned every 7 steps and
# a periodic checkpoint every 50: the run the signal, resume and requeue tests stop and continue
SIGNALLED_RUN = (
    "debug=fast",
    "data.source.n=30",
    "data.source.d=40",
    "model.mode=pairs",
    "model.loss.active_candidates=200",
    "model.loss.active_rescan=7",
    "model.loss.active_hard=20",
    "trainer.max_steps=120",
    "log_every=10",
    "callbacks.model_checkpoint.every_n_train_steps=50",
    "logger=none",
    "baseline.draws=3",
)
