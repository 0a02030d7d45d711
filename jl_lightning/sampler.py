"""The Gaussian solution sampler as a LightningModule.

Parameters: the mean M (k x d) and the variance sigma^2 (see ``variance.py``).
Each training step draws N reparameterized samples A = (M + sigma E) / sqrt(k)
and minimizes

    loss = mean_s max_i | ||A_s x_i||^2 / ||x_i||^2 - 1 |  +  lambda * sigma^2 / 2,

the paper's Appendix B proxy (Eq. 8) with lambda = 1. ``embedding`` is the
deterministic matrix M / sqrt(k): y = embedding @ x embeds x.

``mode="pairs"`` takes the max over all pairs x_i - x_j instead of over points
(see ``pair_loss.py`` for the two pair strategies), and ``smooth_temperature``
replaces the hard max by an annealed log-sum-exp.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from lightning.pytorch import LightningModule
from torch import nn

from jl_lightning.distortion import ratio_distortion, worst_pairs
from jl_lightning.errors import JLInputError
from jl_lightning.log_schedule import is_log_step
from jl_lightning.pair_loss import (PAIR_STRATEGIES, ActivePairs, PairGeometry, active_pair_loss,
                                    annealed_temperature, exact_pair_loss, inverse_sq_distances, smooth_max)
from jl_lightning.sampling import resolve_sampling, sample_embedded, span_factor
from jl_lightning.trainer_overhead import CheapHookBookkeeping
from jl_lightning.variance import make_variance

INIT_MEANS = ("zeros", "gaussian", "identity")
MODES = ("norms", "pairs")
PAIRS_SMOOTH_TEMPERATURE = 0.1  # smooth_temperature="auto" in pairs mode (docs/benchmarks.md)


class GaussianSampler(CheapHookBookkeeping, LightningModule):
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
        ``"identity"``: the embedding starts at init_scale [I_k | 0] plus init_noise N(0, 1)
        entries (Theorem 1's trap with init_scale 2; needs k <= d).
    init_seed: seed of the ``gaussian`` init and the ``identity`` noise (independent of the
        sampling noise).
    init_scale, init_noise: the ``identity`` init's diagonal value and perturbation size.
    reg_weight: lambda in lambda * sigma^2 / 2 (the paper: 1).
    sampling: ``"auto"``, ``"span"`` or ``"full"`` (see ``sampling.py``).
    optimizer: a partial ``torch.optim`` constructor (Hydra ``_partial_: true``).
    scheduler: an optional partial learning-rate scheduler, stepped every step.
    log_every: call ``self.log`` only every this many steps (each call costs ~1 ms).
    mode: ``"norms"`` (the paper: max over points) or ``"pairs"`` (max over all pairs).
    pair_strategy: ``"exact"`` (all pairs every step) or ``"active"`` (hard + random pairs).
    active_hard, active_random, active_refresh: the active set's sizes and its refresh interval.
    smooth_temperature: None for the hard max, or the starting temperature of a
        log-sum-exp max annealed geometrically to ``smooth_temperature_end`` at the last step;
        ``"auto"``: 0.1 in pairs mode with the active strategy, the hard max otherwise.
    """

    def __init__(self, k: int, dim: int, n_samples: int = 20, variance: str = "raw",
                 init_variance: float = 1.0, init_mean: str = "zeros", init_seed: int = 0,
                 init_scale: float = 1.0, init_noise: float = 0.0, reg_weight: float = 1.0, sampling: str = "auto",
                 optimizer: Callable[..., torch.optim.Optimizer] | None = None,
                 scheduler: Callable[..., Any] | None = None, log_every: int = 50,
                 mode: str = "norms", pair_strategy: str = "exact", active_hard: int = 2048,
                 active_random: int = 10000, active_refresh: int = 50,
                 smooth_temperature: float | str | None = None, smooth_temperature_end: float = 1e-4):
        super().__init__()
        for name, value in (("model.k", k), ("model.dim", dim), ("model.n_samples", n_samples),
                            ("model.log_every", log_every), ("model.active_hard", active_hard),
                            ("model.active_random", active_random), ("model.active_refresh", active_refresh)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise JLInputError(f"{name} must be a positive integer, got {value!r}")
        if init_mean not in INIT_MEANS:
            raise JLInputError(f"model.init_mean must be one of {list(INIT_MEANS)}, got {init_mean!r}")
        if not (isinstance(reg_weight, (int, float)) and reg_weight >= 0):
            raise JLInputError(f"model.reg_weight must be a number >= 0, got {reg_weight!r}")
        resolve_sampling(sampling, 1, 1)  # validates the name early
        if mode not in MODES:
            raise JLInputError(f"model.mode must be one of {list(MODES)}, got {mode!r}")
        if pair_strategy not in PAIR_STRATEGIES:
            raise JLInputError(f"model.pair_strategy must be one of {list(PAIR_STRATEGIES)}, got {pair_strategy!r}")
        if smooth_temperature == "auto":  # the measured choice: smooth in pairs mode, the paper's hard max otherwise
            smooth_temperature = PAIRS_SMOOTH_TEMPERATURE if mode == "pairs" and pair_strategy == "active" else None
        if smooth_temperature is not None:
            for name, value in (("model.smooth_temperature", smooth_temperature),
                                ("model.smooth_temperature_end", smooth_temperature_end)):
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    raise JLInputError(f"{name} must be a number > 0 (or smooth_temperature null for "
                                       f"the hard max), got {value!r}")
            if mode == "pairs" and pair_strategy == "exact":
                raise JLInputError("model.smooth_temperature needs model.pair_strategy=active in pairs mode: "
                                   "the exact strategy differentiates each sample's worst pair only")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.k, self.dim, self.n_samples = k, dim, n_samples
        self.reg_weight, self.sampling, self.log_every = float(reg_weight), sampling, log_every
        self.mode, self.pair_strategy = mode, pair_strategy
        self.active_hard, self.active_random, self.active_refresh = active_hard, active_random, active_refresh
        self.smooth_temperature = None if smooth_temperature is None else float(smooth_temperature)
        self.smooth_temperature_end = float(smooth_temperature_end)
        self.active_pairs: ActivePairs | None = None
        if init_mean == "zeros":
            mean = torch.zeros(k, dim)
        elif init_mean == "gaussian":
            gen = torch.Generator().manual_seed(init_seed)
            mean = torch.randn(k, dim, generator=gen)
        else:  # identity: A = M / sqrt(k) starts at init_scale [I | 0] + init_noise N(0, 1)
            if k > dim:
                raise JLInputError(f"model.init_mean=identity needs model.k <= d, got k={k} and d={dim}")
            gen = torch.Generator().manual_seed(init_seed)
            start = init_scale * torch.eye(k, dim) + init_noise * torch.randn(k, dim, generator=gen)
            mean = math.sqrt(k) * start
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

    def _prepared(self, points: torch.Tensor) -> tuple:
        """(points used for sampling, ||x_i||^2, span factor or None, pair geometry or None).

        In pairs mode the points are centered first: distances do not change, and the
        embedded squared distances lose less to cancellation in float32.
        Cached while the same, unmodified batch tensor comes back: full-batch
        training hands the module one tensor every step.
        """
        cache = self._batch_cache
        if cache is not None and cache[0] is points and cache[1] == points._version:
            return cache[2]
        if points.ndim != 2 or points.shape[1] != self.dim:
            raise JLInputError(f"expected points of shape (n, {self.dim}), got {tuple(points.shape)}")
        used, geometry = points, None
        if self.mode == "pairs":
            if points.shape[0] < 2:
                raise JLInputError(f"pairs mode needs at least 2 points, got {points.shape[0]}")
            used = points - points.mean(0)
            if self.pair_strategy == "exact":
                geometry = PairGeometry(used)
            elif self.active_pairs is None:
                self.active_pairs = ActivePairs(points.shape[0], self.active_hard, self.active_random)
        mode = resolve_sampling(self.sampling, used.shape[0], used.shape[1])
        factor = span_factor(used) if mode == "span" else None
        prepared = (used, used.pow(2).sum(1), factor, geometry)
        self._batch_cache = (points, points._version, prepared)
        return prepared

    def temperature(self) -> float | None:
        """The current smooth-max temperature (None: hard max)."""
        if self.smooth_temperature is None:
            return None
        trainer = self._trainer
        total = trainer.max_steps if trainer is not None and trainer.max_steps and trainer.max_steps > 0 else 0
        step = trainer.global_step if trainer is not None else 0
        return annealed_temperature(self.smooth_temperature, self.smooth_temperature_end, step, total)

    def _embedded(self, used: torch.Tensor, factor, s2: torch.Tensor | None) -> torch.Tensor:
        """A X^T for the N samples, shape (N, k, n); one matrix M / sqrt(k) once sigma^2 is frozen."""
        if self.deterministic:
            return ((self.mean @ used.T) / math.sqrt(self.k)).unsqueeze(0)
        return sample_embedded(self.mean, self.variance.sigma(s2), used, self.n_samples, factor)

    def sample_distortions(self, points: torch.Tensor, s2: torch.Tensor | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss term, hard max distortion) of each of the N sampled matrices, shapes (N,).

        The loss term is the hard max over points or pairs, or its smooth version.
        Once sigma^2 is frozen at 0 every sample equals M / sqrt(k), so one
        deterministic evaluation stands for all N.
        """
        used, sq_norms, factor, geometry = self._prepared(points)
        temperature = self.temperature()
        if self.mode == "pairs" and self.pair_strategy == "active":
            i, j = self.active_pairs.draw(used.device)
            differences = used[i] - used[j]
            inv, valid = inverse_sq_distances(differences, sq_norms[i] + sq_norms[j])
            noise = None if self.deterministic else torch.randn(
                self.n_samples, self.k, self.dim, device=used.device, dtype=used.dtype)
            sigma = None if noise is None else self.variance.sigma(s2)
            return active_pair_loss(self.mean, sigma, noise, differences, inv, valid, temperature)
        embedded = self._embedded(used, factor, s2)
        if self.mode == "pairs":  # exact strategy
            hard = exact_pair_loss(embedded, geometry)
            return hard, hard.detach()
        dev = ratio_distortion(embedded.pow(2).sum(1), sq_norms)
        hard = dev.amax(-1)
        return (hard if temperature is None else smooth_max(dev, temperature)), hard.detach()

    @torch.no_grad()
    def refresh_active_pairs(self, points: torch.Tensor) -> None:
        """Exact all-pairs pass with M / sqrt(k): the ``active_hard`` worst pairs become the hard set."""
        used = self._prepared(points)[0]
        i, j, _ = worst_pairs(self.embedding, used, self.active_hard)
        self.active_pairs.set_hard(i, j)

    def objective(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, sampled distortion, sigma^2) on ``points``."""
        s2 = self.variance.value()
        term, hard = self.sample_distortions(points, s2)
        return term.mean() + self.reg_weight * s2 / 2, hard.detach().mean(), s2

    # -------------------------------------------------------------- training
    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        """One projected optimizer step, written out (manual optimization).

        Manual optimization keeps the step to what it is: loss, backward, step,
        project sigma^2 back to its domain, step the schedule. It also skips the
        closure machinery of automatic optimization, which cost ~0.6 ms per step
        here (see scripts/bench_step.py and docs/benchmarks.md).
        """
        optimizer = self.optimizers()
        if self.mode == "pairs" and self.pair_strategy == "active" and \
                (self.active_pairs is None or self.global_step % self.active_refresh == 0):
            self._prepared(batch)
            self.refresh_active_pairs(batch)
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
        return build_optimizers(self.optimizer_factory, self.scheduler_factory, list(self.parameters()))


def build_optimizers(optimizer_factory, scheduler_factory, params: list):
    """Lightning's configure_optimizers value for partial optimizer/scheduler constructors
    (the scheduler stepped every step)."""
    if optimizer_factory is None:
        raise JLInputError("no optimizer configured: set the optimizer group (e.g. optimizer=adam)")
    optimizer = optimizer_factory(params=params)
    if scheduler_factory is None:
        return optimizer
    scheduler = scheduler_factory(optimizer=optimizer)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

