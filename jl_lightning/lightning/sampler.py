"""The Gaussian solution sampler on the sampled max-distortion loss (the paper's Appendix B).

Each training step draws N reparameterized samples A = (M + sigma E) / sqrt(k) and minimizes

    loss = mean_s max_{x in S} | ||A_s x||^2 / ||x||^2 - 1 |  +  lambda sigma^2 / 2,

the paper's Eq. 8 with lambda = 1. The set S (points, all pairs, or an active set of
pairs) and the max (hard or smooth) are one loss object from ``core/losses.py``, chosen
once here. Everything shared with the other sampler is in ``module.BaseJLModule``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Mapping

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from jl_lightning.constraints import (
    NON_NEGATIVE,
    POSITIVE_INT,
    Number,
    check,
    check_params,
)
from jl_lightning.core.losses import ActivePairsLoss, loss_options, make_loss
from jl_lightning.core.objective import SamplerObjective
from jl_lightning.core.plan import check_eps
from jl_lightning.errors import JLInputError
from jl_lightning.lightning.contract import PASS_EPSILON
from jl_lightning.lightning.distributed import exact_report, process_shard
from jl_lightning.lightning.log_schedule import log_at
from jl_lightning.lightning.module import BaseJLModule, shared_options

log = logging.getLogger("jl_lightning")
LOG_PASSES_FROM_S = 5.0  # exact passes longer than this are logged
SAMPLER_CONSTRAINTS = {"subspace_penalty": NON_NEGATIVE, "subspace_energy": Number(low=0, high=1, low_open=True)}


def check_sample_memory(n_samples: int, k: int, dim: int) -> int:
    """``n_samples`` unchanged, or :class:`JLInputError` when the N noise matrices of a step
    (N k d float32 values, drawn every step until the switch) would not fit in half of this
    machine's memory: refused in one line before anything is allocated."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    need = 4 * n_samples * k * dim
    if memory and need > memory // 2:
        most = max(1, (memory // 2) // (4 * k * dim))
        raise JLInputError(
            f"model.n_samples={n_samples}: a step's noise needs {need / 2**30:.1f} GiB (N x k x d float32), "
            f"more than half of this machine's {memory / 2**30:.1f} GiB; at most {most} here"
        )
    return n_samples


def refresh_pass(embedding: torch.Tensor, loss: ActivePairsLoss):
    """The exact pass that refreshes an active set: (its report, the hard pairs (i, j)).

    With at least as many candidates as hard pairs, the hard pairs are the head of the
    candidates (a pass hands them over worst first) and the pass certifies epsilon alone in
    float64, instead of also rechecking the worst ``n_hard`` pairs in float64: at scale those
    rechecks were most of a pass's cost beyond a bare one. Otherwise the worst ``n_hard``.

    Parameters
    ----------
    embedding : torch.Tensor
        The (k, d) map M / sqrt(k).
    loss : ActivePairsLoss
        A prepared active-pairs loss (its points, ``n_hard`` and ``n_candidates``).

    Returns
    -------
    tuple
        (DistortionReport, (i, j) index arrays of the hard pairs).

    Examples
    --------
    >>> report, (i, j) = refresh_pass(M / k**0.5, loss)  # doctest: +SKIP
    """
    from_candidates = loss.n_candidates >= loss.n_hard
    report = exact_report(
        embedding,
        loss.points,
        "pairs",
        worst=0 if from_candidates else loss.n_hard,
        quantiles=False,
        mean_abs=False,
        candidates=loss.n_candidates,
    )
    pairs = report.candidates if from_candidates else report.worst
    return report, tuple(np.asarray(c[: loss.n_hard]) for c in pairs[:2])


class GaussianSampler(BaseJLModule):
    """Learn M and sigma^2 of A ~ N(M, sigma^2) / sqrt(k) on the sampled loss.

    Parameters beyond ``BaseJLModule``'s (``model.*``; defaults in conf/model/sampler.yaml)
    ----------
    n_samples: N, sampled matrices per step.
    sampling: ``"auto"``, ``"span"`` or ``"full"`` (``core/sampling.py``).
    pair_strategy: in pairs mode, ``"active"`` (hard + random pairs) or ``"exact"`` (all pairs
        every step).
    active_hard, active_random, active_refresh: the active set's sizes and the steps between
        its exact refreshes.
    active_refresh_growth: each gap between refreshes is this factor longer than the last
        (1: every ``active_refresh`` steps).
    active_refresh_extra: more steps with an exact refresh, besides that schedule (with
        ``active_refresh=None``, no schedule: step 0 and these steps).
    active_memory: hard pairs of earlier refreshes kept in the active set (0: none).
    active_candidates, active_rescan: each exact pass also hands over ``active_candidates``
        of its worst pairs, ranked in float32 (0: none), and every ``active_rescan`` steps
        between passes the hard pairs become the worst of them under the current M
        (``ActivePairsLoss``).
    smooth_temperature: None for the hard max, a starting temperature for a log-sum-exp max
        annealed geometrically to ``smooth_temperature_end`` at the last step, or ``"auto"``:
        0.1 in pairs mode with the active strategy, the hard max otherwise.
    subspace_penalty, subspace_energy: a penalty aimed at unseen vectors (0: off). With U_r
        the principal directions of the training points that hold ``subspace_energy`` of
        their variance and Q = I - U_r U_r^T, the loss gains

            subspace_penalty * ||(M / sqrt(k)) Q||_F^2,

        so the map keeps little gain outside the directions the data spans: a new vector's
        component there is damped instead of amplified by entries the max-distortion loss
        never constrained.
    eps: the target epsilon of ``model.k=auto`` (None: k was given); recorded, not trained on.
    """

    def __init__(self, k: int, dim: int, n_samples: int = 20, variance: str = "raw", init_variance: float = 1.0,
                 init_mean: str = "zeros", init_seed: int = 0, init_scale: float = 1.0, init_noise: float = 0.0,
                 reg_weight: float = 1.0, optimizer: Callable[..., torch.optim.Optimizer] | None = None,
                 scheduler: Callable[..., Any] | None = None, log_every: int = 50, mode: str = "norms",
                 *, loss: Mapping[str, Any], subspace_penalty: float = 0.0,
                 subspace_energy: float = 0.99, eps: float | None = None):  # fmt: skip
        super().__init__(k, dim, **shared_options(locals()))
        # the target of model.k=auto (jl-train searched k for it before building this module);
        # kept with the hyperparameters, the loss does not read it
        self.eps = None if eps is None else check_eps(eps)
        self.n_samples = check_sample_memory(check("model.n_samples", n_samples, POSITIVE_INT), k, dim)
        if not isinstance(loss, Mapping):
            raise JLInputError(
                f"model.loss must be a mapping of the loss's options (conf/model/sampler.yaml), got {loss!r}"
            )
        # plain values in the checkpoint's hyperparameters: torch.load (weights_only) refuses
        # Hydra's DictConfig and ListConfig, so a resumed run could not read its own checkpoint
        loss = OmegaConf.to_container(loss, resolve=True) if isinstance(loss, DictConfig) else dict(loss)
        check_params(locals(), SAMPLER_CONSTRAINTS, "model.")
        # the whole objective, its loss term over S included, and its state (core/objective.py)
        self.objective_fn = SamplerObjective(
            loss=make_loss(mode=mode, **loss_options(loss)),
            reg_weight=reg_weight,
            subspace_penalty=subspace_penalty,
            subspace_energy=subspace_energy,
        )
        self.loss_fn = self.objective_fn.loss
        # in checkpoints; the loggers get the whole resolved config from fit_from_config instead
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self._prepared_for: torch.Tensor | None = None

    def prepare(self, points: torch.Tensor) -> None:
        """Prepare the loss for ``points`` (n, d), once per data tensor (see the contract)."""
        if points is self._prepared_for:
            return
        if points.ndim != 2 or points.shape[1] != self.dim:
            raise JLInputError(f"expected points of shape (n, {self.dim}), got {tuple(points.shape)}")
        if self.mode == "pairs" and points.shape[0] < 2:
            raise JLInputError(f"pairs mode needs at least 2 points, got {points.shape[0]}")
        # a resumed run's restored active set is applied here (the loss's load_state_dict)
        self.objective_fn.prepare(points, process_shard(), self.mean.dtype)
        self._prepared_for = points

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["jl_objective"] = self.objective_fn.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.objective_fn.load_state_dict(checkpoint.get("jl_objective") or {})

    def temperature(self) -> float | None:
        """The current smooth-max temperature (None: hard max)."""
        return self.loss_fn.maximum.temperature(self.global_step, self.total_steps)

    @torch.no_grad()
    def refresh_active_pairs(self, points: torch.Tensor) -> None:
        """Exact all-pairs pass with M / sqrt(k): the worst pairs become the active set's hard pairs
        (shared by all ranks of a distributed run, each of which keeps its share)."""
        self.prepare(points)
        loss = self.loss_fn
        if not bool(self.mean.detach().any()):
            # at M = 0 (model.init_mean=zeros) every pair ties at deviation 1: a pass would report
            # only ties, at the cost of a whole pass. The active set starts from random pairs
            # (and random candidates, ranked by the rescans as M grows); the first pass waits
            # for its schedule.
            loss.start_at_ties()
            log.info("step %d: M = 0, no exact pass (every pair ties): %d random hard pairs%s until the first pass",
                     self.global_step, loss.n_hard,
                     f" and {loss.n_candidates} random candidates" if loss.n_candidates else "")  # fmt: skip
            return
        began = time.perf_counter()
        report, hard = refresh_pass(self.embedding, loss)
        loss.set_hard(*hard)
        if loss.n_candidates:
            i, j, _, sq_distances = report.candidates
            loss.set_candidates(i, j, sq_distances)
        seconds = time.perf_counter() - began
        try:  # the certified epsilon of M at every exact pass (at scale the tracker runs only at the end)
            log_at(self.trainer, {PASS_EPSILON: report.epsilon}, self.global_step)
            # and for the progress line (callback_metrics), where the tracker has not certified M yet
            self.log(PASS_EPSILON, float(report.epsilon), logger=False, on_step=True, on_epoch=False)
        except RuntimeError:  # not attached to a Trainer (a pass called directly)
            pass
        if seconds > LOG_PASSES_FROM_S:  # at scale, where a pass is the cost of many steps
            log.info(
                "step %d: exact pass over %d pairs in %.1f s, epsilon %.4g; %d pairs in the active set",
                self.global_step,
                report.count,
                seconds,
                report.epsilon,
                len(loss.active.hard_i),
            )

    def objective(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, mean sampled max distortion, sigma^2) on ``points`` (``core/objective.py``)."""
        self.prepare(points)
        return self.objective_fn(self.mean, self.variance, self.n_samples, self.global_step, self.total_steps)

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        """One projected optimizer step, written out: loss, backward, step, project sigma^2
        back to its domain, step the schedule (manual optimization, no closure machinery).
        The loss describes M before the update, so it is logged under the step count before
        it (``log_schedule.py``)."""
        optimizer = self.optimizers()
        before = self.global_step
        # prepared first: a resumed run's restored active set counts as refreshed, so it does
        # not run an exact pass the uninterrupted run did not run at this step
        self.prepare(batch)
        if self.loss_fn.needs_refresh(before):
            self.refresh_active_pairs(batch)
        elif isinstance(self.loss_fn, ActivePairsLoss) and self.loss_fn.needs_rescan(before):
            self.loss_fn.rescan(self.mean)
        loss, sampled, s2 = self.objective(batch)
        temperature = self.temperature()  # the one this step's loss used (before the step count moves)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        self.variance.project_()
        self.step_schedule()
        if before % self.log_every == 0:
            metrics = {"train/loss": loss.detach(), "train/sampled_distortion": sampled.detach()}
            if temperature is not None:  # the smooth max's annealed temperature
                metrics["train/temperature"] = temperature
            log_at(self.trainer, metrics, before)
