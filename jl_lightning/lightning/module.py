"""The base LightningModule: what every sampler of A ~ N(M, sigma^2) / sqrt(k) shares.

It owns k, d, the mean M (k x d), the variance sigma^2 (``core/variance.py``), their
initialization and validation, the deterministic ``embedding`` M / sqrt(k) that is
evaluated and exported, the switch to it (``freeze_variance``), and the optimizers. It
implements the module side of the written contract (``contract.py``). A subclass adds
its objective and its ``training_step``:

* ``sampler.GaussianSampler``: the sampled max-distortion loss (the paper's Appendix B);
* ``exact_sampler.ExactSampler``: the exact objective g (Eq. 3-4) with second-order steps.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable

import torch
from lightning.pytorch import LightningModule
from torch import nn

from jl_lightning.constraints import FINITE, NON_NEGATIVE, POSITIVE_INT, check_params
from jl_lightning.core.trap import trap_matrix
from jl_lightning.core.variance import make_variance
from jl_lightning.errors import JLInputError
from jl_lightning.lightning.distributed import share_rng_state

INIT_MEANS = ("zeros", "gaussian", "identity")
# what every sampler's shared options accept (model.*), checked in one place (constraints.py)
MODULE_CONSTRAINTS = {
    "k": POSITIVE_INT,
    "dim": POSITIVE_INT,
    "log_every": POSITIVE_INT,
    "reg_weight": NON_NEGATIVE,
    "init_scale": FINITE,
    "init_noise": FINITE,
}


def initial_mean(
    k: int, dim: int, init_mean: str, init_seed: int, init_scale: float, init_noise: float, dtype: torch.dtype
) -> torch.Tensor:
    """M at step 0, so that the embedding M / sqrt(k) starts at

    * ``zeros``: 0 (the paper);
    * ``gaussian``: init_scale N(0, 1) / sqrt(k), i.e. M = init_scale N(0, 1) (the usual random JL
      matrix at init_scale 1);
    * ``identity``: init_scale [I_k | 0] + init_noise N(0, 1) (Theorem 1's trap at init_scale 2;
      needs k <= d).
    """
    if init_mean not in INIT_MEANS:
        raise JLInputError(f"model.init_mean must be one of {list(INIT_MEANS)}, got {init_mean!r}")
    gen = torch.Generator().manual_seed(int(init_seed))
    if init_mean == "zeros":
        return torch.zeros(k, dim, dtype=dtype)
    if init_mean == "gaussian":
        return init_scale * torch.randn(k, dim, generator=gen, dtype=dtype)
    if k > dim:
        raise JLInputError(f"model.init_mean=identity needs model.k <= d, got k={k} and d={dim}")
    trap = torch.as_tensor(trap_matrix(k, dim, init_scale), dtype=dtype)  # Theorem 1's local minimum
    start = trap + init_noise * torch.randn(k, dim, generator=gen, dtype=dtype)
    return math.sqrt(k) * start


def shared_options(values: dict) -> dict:
    """The options of ``values`` (a sampler's arguments, ``locals()``) that :class:`BaseJLModule`
    takes besides k and dim, by name: a subclass passes them on with
    ``super().__init__(k, dim, **shared_options(locals()))``."""
    return {name: values[name] for name in SHARED_OPTIONS}


class BaseJLModule(LightningModule):
    """M and sigma^2 of A ~ N(M, sigma^2) / sqrt(k), with what every sampler shares.

    Parameters (``model.*``; the YAML in conf/model/ is the source of defaults)
    ----------
    k: target dimension (rows of M).
    dim: input dimension d; jl-train passes the data's d.
    variance: ``"raw"`` (the paper's clamped sigma^2) or ``"log"`` (sigma^2 = exp(theta)).
    init_variance: sigma^2 at step 0 (the paper: 1); 0 with ``raw`` is direct optimization.
    init_mean, init_seed, init_scale, init_noise: M at step 0 (:func:`initial_mean`).
    reg_weight: lambda in lambda sigma^2 / 2 (the paper: 1).
    optimizer: a partial ``torch.optim`` constructor (Hydra ``_partial_: true``).
    scheduler: an optional partial learning-rate scheduler, stepped every step.
    log_every: call ``self.log`` every this many steps (aligned with the trainer's
        ``log_every_n_steps``; each call has a fixed cost).
    mode: ``"norms"`` (max over points) or ``"pairs"`` (max over all pairs).
    """

    modes: tuple[str, ...] = ("norms", "pairs")

    def __init__(self, k: int, dim: int, variance: str = "raw", init_variance: float = 1.0, init_mean: str = "zeros",
                 init_seed: int = 0, init_scale: float = 1.0, init_noise: float = 0.0, reg_weight: float = 1.0,
                 optimizer: Callable[..., torch.optim.Optimizer] | None = None,
                 scheduler: Callable[..., Any] | None = None, log_every: int = 50, mode: str = "norms",
                 dtype: torch.dtype = torch.float32):  # fmt: skip
        super().__init__()
        check_params(locals(), MODULE_CONSTRAINTS, "model.")
        if mode not in self.modes:
            raise JLInputError(f"model.mode must be one of {list(self.modes)} for {type(self).__name__}, got {mode!r}")
        self.k, self.dim, self.mode, self.log_every = k, dim, mode, log_every
        self.reg_weight = float(reg_weight)
        self.mean = nn.Parameter(initial_mean(k, dim, init_mean, init_seed, init_scale, init_noise, dtype))
        self.variance = make_variance(variance, init_variance).to(dtype)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.total_steps = 0  # trainer.max_steps once fitting (schedules that anneal over the run)
        self._restored_rng: dict | None = None  # a checkpoint's RNG state, put back at train start
        self.automatic_optimization = False  # every subclass writes its step out

    # ------------------------------------------------------------ contract
    @property
    def embedding(self) -> torch.Tensor:
        """The deterministic embedding matrix M / sqrt(k), shape (k, d): y = embedding @ x."""
        return self.mean.detach() / math.sqrt(self.k)

    @property
    def deterministic(self) -> bool:
        """True once sigma^2 is frozen at exactly 0."""
        return self.variance.is_frozen

    def sigma2(self) -> float:
        """sigma^2 as a Python float."""
        return self.variance.current()

    def freeze_variance(self) -> None:
        """Set sigma^2 to exactly 0 for good: every sample is then M / sqrt(k)."""
        self.variance.freeze_at_zero()

    def run_report(self) -> dict | None:
        """The optimizer's own account for summary.json (None: nothing beyond the common figures)."""
        return None

    # -------------------------------------------------------------- fitting
    def on_fit_start(self) -> None:
        max_steps = self.trainer.max_steps
        self.total_steps = max_steps if max_steps and max_steps > 0 else 0

    # ---------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Besides Lightning's state: the global RNG state, so that a resumed run draws the same
        noise as the uninterrupted one (the checkpoint is saved between two steps)."""
        checkpoint["jl_rng"] = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            checkpoint["jl_rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A checkpoint continues only its own run: one of another mode, k or d is refused in
        one line naming the option (before the data's check, which would call it other data)."""
        saved = checkpoint.get("hyper_parameters") or {}
        for name in ("mode", "k", "dim"):
            if name in saved and saved[name] != getattr(self, name):
                option = "the data's dimension d" if name == "dim" else f"model.{name}"
                raise JLInputError(
                    f"resume: the checkpoint is of a run with {option}={saved[name]}, this run has "
                    f"{getattr(self, name)}; a checkpoint continues only the run that wrote it"
                )
        self._restored_rng = checkpoint.get("jl_rng")

    def on_train_start(self) -> None:
        """Put back the RNG state of a resumed checkpoint, right before the first step; in a
        distributed run, then give every rank rank 0's state (one noise stream for all)."""
        restored = self._restored_rng
        if restored:
            torch.set_rng_state(restored["torch"])
            if "cuda" in restored and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(restored["cuda"])
            self._restored_rng = None
        share_rng_state()

    def step_schedule(self) -> None:
        """Step the learning-rate schedule, if one is configured (every optimizer step)."""
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise JLInputError("no optimizer configured: set the optimizer group (e.g. optimizer=adam)")
        optimizer = self.optimizer_factory(params=list(self.parameters()))
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


# every BaseJLModule option a subclass passes on, besides k and dim (dtype is the subclass's choice)
SHARED_OPTIONS = tuple(
    name for name in inspect.signature(BaseJLModule.__init__).parameters if name not in ("self", "k", "dim", "dtype")
)
