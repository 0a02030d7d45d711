"""The Gaussian solution sampler as a LightningModule.

Parameters: the mean M (k x d) and the variance sigma^2 (see ``variance.py``).
Each training step draws N reparameterized samples A = (M + sigma E) / sqrt(k)
and minimizes

    loss = mean_s max_i | ||A_s x_i||^2 / ||x_i||^2 - 1 |  +  lambda * sigma^2 / 2,

the paper's Appendix B proxy (Eq. 8) with lambda = 1. ``embedding`` is the
deterministic matrix M / sqrt(k): y = embedding @ x embeds x.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from lightning.pytorch import LightningModule
from torch import nn

from jl_lightning.distortion import ratio_distortion
from jl_lightning.errors import JLInputError
from jl_lightning.log_schedule import is_log_step
from jl_lightning.sampling import resolve_sampling, sample_embedded, span_factor
from jl_lightning.variance import make_variance

INIT_MEANS = ("zeros", "gaussian")


class GaussianSampler(LightningModule):
    """Learn M and sigma^2 of A ~ N(M, sigma^2) / sqrt(k).

    Parameters
    ----------
    k: target dimension (rows of M).
    dim: input dimension d; ``jl-train`` passes the data's d.
    n_samples: N, sampled matrices per step.
    variance: ``"raw"`` (the paper's clamped sigma^2) or ``"log"``.
    init_variance: sigma^2 at step 0 (the paper: 1).
    init_mean: ``"zeros"`` (the paper) or ``"gaussian"`` (one N(0, 1) draw, the
        usual random JL matrix up to the 1/sqrt(k) scale).
    init_seed: seed of the ``gaussian`` init (independent of the sampling noise).
    reg_weight: lambda in lambda * sigma^2 / 2 (the paper: 1).
    sampling: ``"auto"``, ``"span"`` or ``"full"`` (see ``sampling.py``).
    optimizer: a partial ``torch.optim`` constructor (Hydra ``_partial_: true``).
    scheduler: an optional partial learning-rate scheduler, stepped every step.
    log_every: call ``self.log`` only every this many steps (each call costs ~1 ms).
    """

    def __init__(self, k: int, dim: int, n_samples: int = 20, variance: str = "raw",
                 init_variance: float = 1.0, init_mean: str = "zeros", init_seed: int = 0,
                 reg_weight: float = 1.0, sampling: str = "auto",
                 optimizer: Callable[..., torch.optim.Optimizer] | None = None,
                 scheduler: Callable[..., Any] | None = None, log_every: int = 50):
        super().__init__()
        for name, value in (("model.k", k), ("model.dim", dim), ("model.n_samples", n_samples),
                            ("model.log_every", log_every)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise JLInputError(f"{name} must be a positive integer, got {value!r}")
        if init_mean not in INIT_MEANS:
            raise JLInputError(f"model.init_mean must be one of {list(INIT_MEANS)}, got {init_mean!r}")
        if not (isinstance(reg_weight, (int, float)) and reg_weight >= 0):
            raise JLInputError(f"model.reg_weight must be a number >= 0, got {reg_weight!r}")
        resolve_sampling(sampling, 1, 1)  # validates the name early
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.k, self.dim, self.n_samples = k, dim, n_samples
        self.reg_weight, self.sampling, self.log_every = float(reg_weight), sampling, log_every
        if init_mean == "zeros":
            mean = torch.zeros(k, dim)
        else:
            gen = torch.Generator().manual_seed(init_seed)
            mean = torch.randn(k, dim, generator=gen)
        self.mean = nn.Parameter(mean)
        self.variance = make_variance(variance, init_variance)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self._batch_cache: tuple | None = None
        self.automatic_optimization = False  # see training_step

    # ----------------------------------------------------------------- model
    @property
    def embedding(self) -> torch.Tensor:
        """The deterministic embedding matrix M / sqrt(k), shape (k, d)."""
        return self.mean.detach() / math.sqrt(self.k)

    @property
    def deterministic(self) -> bool:
        """True once sigma^2 is frozen at exactly 0."""
        return self.variance.is_frozen

    def _prepared(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(||x_i||^2, span factor or None) of ``points``.

        Cached while the same, unmodified batch tensor comes back: full-batch
        training hands the module one tensor every step.
        """
        cache = self._batch_cache
        if cache is not None and cache[0] is points and cache[1] == points._version:
            return cache[2], cache[3]
        if points.ndim != 2 or points.shape[1] != self.dim:
            raise JLInputError(f"expected points of shape (n, {self.dim}), got {tuple(points.shape)}")
        mode = resolve_sampling(self.sampling, points.shape[0], points.shape[1])
        factor = span_factor(points) if mode == "span" else None
        sq_norms = points.pow(2).sum(1)
        self._batch_cache = (points, points._version, sq_norms, factor)
        return sq_norms, factor

    def sample_distortions(self, points: torch.Tensor, s2: torch.Tensor | None = None) -> torch.Tensor:
        """Max distortion over ``points`` of each of N sampled matrices, shape (N,).

        Once sigma^2 is frozen at 0 every sample equals M / sqrt(k), so one
        deterministic evaluation stands for all N.
        """
        sq_norms, factor = self._prepared(points)
        if self.deterministic:
            embedded = ((self.mean @ points.T) / math.sqrt(self.k)).unsqueeze(0)
        else:
            sigma = self.variance.sigma(s2)
            embedded = sample_embedded(self.mean, sigma, points, self.n_samples, factor)
        return ratio_distortion(embedded.pow(2).sum(1), sq_norms).amax(-1)

    def objective(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, sampled distortion, sigma^2) on ``points``."""
        s2 = self.variance.value()
        sampled = self.sample_distortions(points, s2).mean()
        return sampled + self.reg_weight * s2 / 2, sampled, s2

    # -------------------------------------------------------------- training
    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        """One projected optimizer step, written out (manual optimization).

        Manual optimization keeps the step to what it is: loss, backward, step,
        project sigma^2 back to its domain, step the schedule. It also skips the
        closure machinery of automatic optimization, which cost ~0.6 ms per step
        here (see scripts/bench_step.py and docs/benchmarks.md).
        """
        optimizer = self.optimizers()
        loss, sampled, s2 = self.objective(batch)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        self.variance.project_()
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        if is_log_step(self.global_step, self.log_every):  # global_step counts this step now
            self.log_dict({"train/loss": loss.detach(), "train/sampled_distortion": sampled.detach(),
                           "train/sigma2": s2.detach()}, on_step=True, on_epoch=False)

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise JLInputError("no optimizer configured: set the optimizer group (e.g. optimizer=adam)")
        optimizer = self.optimizer_factory(params=list(self.parameters()))
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

