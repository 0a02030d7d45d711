"""The sampler on the paper's exact objective g(M, sigma^2) (Eq. 3-4, ``core/exact_objective.py``).

Three ways to optimize it (``method``):

* ``adam``: the configured torch optimizer on g;
* ``hessian``: Algorithm 1, Hessian descent (``core/second_order.HessianDescent``); when it
  reaches an approximate second-order stationary point it stops and training ends;
* ``pgd``: perturbed gradient descent (``core/second_order.PerturbedGD``), first-order
  information only, with Jin et al.'s stopping rule.

Parameters follow the paper's convention: A ~ N(M, sigma^2) entrywise, distortion measured
on ||A x||^2 / k, so the deterministic embedding is M / sqrt(k), the same matrix the rest of
jl_lightning evaluates and exports. Everything runs in float64.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch

from jl_lightning.constraints import POSITIVE, POSITIVE_INT, Number, check_params
from jl_lightning.core.exact_objective import exact_objective
from jl_lightning.core.second_order import GRADIENT, HessianDescent, PerturbedGD
from jl_lightning.errors import JLInputError
from jl_lightning.lightning.log_schedule import log_at
from jl_lightning.lightning.module import BaseJLModule, shared_options

METHODS = ("adam", "hessian", "pgd")


# what the exact sampler's own options accept (model.*), checked in one place (constraints.py)
EXACT_CONSTRAINTS = {
    "eps": Number(low=0, high=1, low_open=True, high_open=True),
    "L": POSITIVE,
    "K": POSITIVE,
    "rho": POSITIVE,
    "pgd_radius": POSITIVE,
    "max_step": POSITIVE,
    "max_curvature_step": POSITIVE,
    "pgd_threshold": POSITIVE,
    "lanczos_iters": POSITIVE_INT,
    "pgd_interval": POSITIVE_INT,
}


class ExactProblem:
    """g at the module's current M and sigma^2 on fixed points: what a stepper works on."""

    def __init__(self, module: "ExactSampler", points: torch.Tensor):
        self.module, self.points = module, points.double()

    def objective(self) -> torch.Tensor:
        return self.module.objective(self.points)

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for p in (self.module.mean, self.module.variance.theta) if p.requires_grad]

    def project_(self) -> None:
        self.module.variance.project_()

    def drop_at_bound(self, grads: list[torch.Tensor]) -> list[torch.Tensor]:
        """With a raw sigma^2 at its bound 0, a positive d g / d sigma^2 (the regularizer) points
        out of the domain and is dropped, so a point with sigma^2 = 0 can be stationary."""
        variance = self.module.variance
        if variance.theta.requires_grad and variance.current() <= 0.0 and float(grads[-1].detach()) > 0:
            grads[-1] = grads[-1] * 0
        return grads


class ExactSampler(BaseJLModule):
    """M (k x d) and sigma^2 trained on g(M, sigma^2) with the configured ``method``.

    Parameters beyond ``BaseJLModule``'s (``model.*``; defaults in conf/model/exact.yaml)
    ----------
    eps: the epsilon of g.
    method: ``adam``, ``hessian`` or ``pgd`` (see the module docstring).
    L, K, rho: Algorithm 1's gradient Lipschitz constant, Hessian Lipschitz constant and
        gradient threshold (also PGD's step 1/L and threshold rho).
    backtracking, max_step: Armijo backtracking of the gradient steps (from twice the last
        accepted step, capped at max_step) instead of a fixed 1/L, and halving of a curvature
        step until g decreases.
    max_curvature_step: cap on the curvature step's length |lambda| / K.
    lanczos_iters: Lanczos steps per eigenvalue estimate.
    pgd_radius, pgd_interval, pgd_threshold: PGD's perturbation radius, the steps between
        perturbations, and the decrease of g a perturbation must bring within pgd_interval.
    optimizer: a partial torch optimizer (``adam`` method only).
    """

    modes = ("norms",)

    def __init__(
        self,
        k: int,
        dim: int,
        eps: float = 0.3,
        method: str = "hessian",
        variance: str = "raw",
        init_variance: float = 1.0,
        init_mean: str = "zeros",
        init_seed: int = 0,
        init_scale: float = 1.0,
        init_noise: float = 0.0,
        reg_weight: float = 1.0,
        L: float = 100.0,
        K: float = 1e-5,
        rho: float = 0.01,
        lanczos_iters: int = 40,
        pgd_radius: float = 1.0,
        pgd_interval: int = 1000,
        pgd_threshold: float = 1e-3,
        backtracking: bool = True,
        max_step: float = 1.0,
        max_curvature_step: float = 10.0,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        log_every: int = 50,
        mode: str = "norms",
    ):
        super().__init__(k, dim, **shared_options(locals()), dtype=torch.float64)
        if method not in METHODS:
            raise JLInputError(f"model.method must be one of {list(METHODS)}, got {method!r}")
        check_params(locals(), EXACT_CONSTRAINTS, "model.")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"], logger=False)
        self.eps, self.method = float(eps), method
        self.stepper = None
        if method == "hessian":
            self.stepper = HessianDescent(
                L, K, rho, lanczos_iters, backtracking, max_step, max_curvature_step, seed=int(init_seed) + 1
            )
        elif method == "pgd":
            self.stepper = PerturbedGD(
                L, rho, pgd_radius, pgd_interval, pgd_threshold, backtracking, max_step, seed=int(init_seed) + 1
            )
        self.adam_steps = 0
        self.stopped_at: int | None = None

    def run_report(self) -> dict:
        """How the run went, for summary.json: steps of each kind and where it stopped."""
        counts = (
            self.stepper.report()
            if self.stepper is not None
            else {"gradient_steps": self.adam_steps, "curvature_steps": 0, "perturbations": 0}
        )
        return {
            "method": self.method,
            "eps": self.eps,
            **counts,
            "stopped_at": self.stopped_at,
            "sigma2": self.sigma2(),
        }

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        state = {"adam_steps": self.adam_steps, "stopped_at": self.stopped_at}
        if self.stepper is not None:
            state["stepper"] = self.stepper.state_dict()
        checkpoint["jl_exact"] = state

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("jl_exact")
        if not state:
            return
        self.adam_steps, self.stopped_at = state["adam_steps"], state["stopped_at"]
        if self.stepper is not None and "stepper" in state:
            self.stepper.load_state_dict(state["stepper"])

    def objective(self, points: torch.Tensor) -> torch.Tensor:
        """g(M, sigma^2) on ``points`` (float64)."""
        return exact_objective(self.mean, self.variance.value(), points.double(), self.eps, self.reg_weight)

    def _adam_step(self, batch: torch.Tensor) -> dict:
        optimizer = self.optimizers()
        value = self.objective(batch)
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(value)
        params = ExactProblem(self, batch).parameters()
        grad_norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params if p.grad is not None))
        optimizer.step()
        self.variance.project_()
        self.step_schedule()
        self.adam_steps += 1
        return {"value": float(value.detach()), "grad_norm": grad_norm, "lambda_min": math.nan, "step_type": GRADIENT}

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        before = self.global_step  # the figures below describe M before this step's update
        if self.stepper is None:
            info = self._adam_step(batch)
        else:
            info = self.stepper.step(ExactProblem(self, batch))
            if self.stepper.stopped and self.stopped_at is None:
                # an approximate second-order stationary point: the algorithm returns M
                self.stopped_at = int(self.global_step)
                self.trainer.should_stop = True
            self.optimizers().step()  # the stand-in optimizer: counts the step (global_step), changes nothing
        if before % self.log_every == 0:
            log_at(
                self.trainer,
                {
                    "exact/objective": info["value"],
                    "exact/grad_norm": info["grad_norm"],
                    "exact/lambda_min": info["lambda_min"],
                    "exact/step_type": info["step_type"],
                },
                before,
            )

    def configure_optimizers(self):
        if self.stepper is not None:
            # Algorithm 1 and PGD update the parameters themselves; Lightning still needs an
            # optimizer to count steps, so a no-op SGD (lr 0) stands in.
            return torch.optim.SGD(self.parameters(), lr=0.0)
        return super().configure_optimizers()
