"""The sampler on the paper's exact objective g(M, sigma^2) (Eq. 3-4), as a LightningModule.

Three ways to optimize it (``method``):

* ``adam``: the configured torch optimizer on g (the "Adam path");
* ``hessian``: Algorithm 1, Hessian descent. If ||grad g|| > rho, a gradient step of size
  1/L. Otherwise the most negative Hessian eigenvalue is found with Hessian-vector products
  and Lanczos (the Hessian is never formed); if it is below -sqrt(K rho), a step of length
  |lambda| / K along its eigenvector (signed to descend), else the algorithm stops and
  training ends;
* ``pgd``: perturbed gradient descent (Jin et al. 2017): gradient steps of size 1/L, and when
  ||grad g|| <= rho and no perturbation happened in the last ``pgd_interval`` steps, a
  uniform random perturbation of radius ``pgd_radius``. If g has not dropped by
  ``pgd_threshold`` ``pgd_interval`` steps after a perturbation, PGD returns the point it
  perturbed, an approximate second-order stationary point. First-order information only.

Parameters follow the paper's convention: A ~ N(M, sigma^2) entrywise, distortion measured
on ||A x||^2 / k, so the deterministic embedding is M / sqrt(k) (``embedding``), the same
matrix the rest of jl_lightning evaluates and exports. Everything runs in float64.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from lightning.pytorch import LightningModule
from torch import nn

from jl_lightning.errors import JLInputError
from jl_lightning.exact_objective import exact_objective
from jl_lightning.log_schedule import is_log_step
from jl_lightning.sampler import build_optimizers
from jl_lightning.trainer_overhead import CheapHookBookkeeping
from jl_lightning.variance import make_variance

METHODS = ("adam", "hessian", "pgd")


def lanczos_min_eigen(hvp: Callable[[torch.Tensor], torch.Tensor], dim: int, iters: int,
                      generator: torch.Generator | None = None, dtype=torch.float64) -> tuple[float, torch.Tensor]:
    """(smallest eigenvalue, unit eigenvector) of a symmetric operator given by ``hvp``,
    by ``iters`` Lanczos steps with full reorthogonalization."""
    m = max(1, min(iters, dim))
    basis = torch.zeros(m + 1, dim, dtype=dtype)
    alpha, beta = torch.zeros(m, dtype=dtype), torch.zeros(m, dtype=dtype)
    start = torch.randn(dim, dtype=dtype, generator=generator)
    basis[0] = start / start.norm()
    steps = m
    for j in range(m):
        w = hvp(basis[j])
        alpha[j] = w @ basis[j]
        w = w - basis[:j + 1].T @ (basis[:j + 1] @ w)  # full reorthogonalization
        w = w - basis[:j + 1].T @ (basis[:j + 1] @ w)
        beta[j] = w.norm()
        if beta[j] < 1e-12:
            steps = j + 1
            break
        basis[j + 1] = w / beta[j]
    T = torch.diag(alpha[:steps]) + torch.diag(beta[:steps - 1], 1) + torch.diag(beta[:steps - 1], -1)
    values, vectors = torch.linalg.eigh(T)
    vector = basis[:steps].T @ vectors[:, 0]
    return float(values[0]), vector / vector.norm()


class ExactSampler(CheapHookBookkeeping, LightningModule):
    """M (k x d) and sigma^2 trained on g(M, sigma^2) with the configured ``method``.

    Parameters
    ----------
    k, dim: target and input dimension (``dim`` comes from the data).
    eps: the epsilon of g.
    method: ``adam``, ``hessian`` or ``pgd`` (see the module docstring).
    variance, init_variance: sigma^2's parameterization and start (the paper: raw, 1).
    init_mean, init_seed, init_scale: ``zeros`` (the paper) or ``gaussian`` (init_scale * N(0, 1)).
    reg_weight: lambda in lambda sigma^2 / 2.
    L, K, rho: Algorithm 1's gradient Lipschitz constant, Hessian Lipschitz constant and
        gradient threshold (also PGD's step 1/L and threshold rho).
    backtracking, max_step: estimate the local 1/L by Armijo backtracking (starting from
        twice the last accepted step, capped at max_step) instead of a fixed 1/L, and halve a
        curvature step until g decreases.
    max_curvature_step: cap on the curvature step's length |lambda| / K.
    lanczos_iters: Lanczos steps per eigenvalue estimate.
    pgd_radius, pgd_interval, pgd_threshold: PGD's perturbation radius, the steps between
        perturbations, and the decrease of g a perturbation must bring within pgd_interval
        steps; when it does not, PGD stops and returns the point it perturbed (Jin et al.).
    optimizer: a partial torch optimizer (``adam`` method only).
    """

    def __init__(self, k: int, dim: int, eps: float = 0.3, method: str = "hessian", variance: str = "raw",
                 init_variance: float = 1.0, init_mean: str = "zeros", init_seed: int = 0, init_scale: float = 1.0,
                 reg_weight: float = 1.0, L: float = 100.0, K: float = 1e-5, rho: float = 0.01,
                 lanczos_iters: int = 40, pgd_radius: float = 1.0, pgd_interval: int = 1000,
                 pgd_threshold: float = 1e-3,
                 backtracking: bool = True, max_step: float = 1.0, max_curvature_step: float = 10.0,
                 optimizer: Callable[..., torch.optim.Optimizer] | None = None,
                 scheduler: Callable[..., Any] | None = None, log_every: int = 50, mode: str = "norms"):
        super().__init__()
        if method not in METHODS:
            raise JLInputError(f"model.method must be one of {list(METHODS)}, got {method!r}")
        if not (isinstance(eps, (int, float)) and 0 < eps < 1):
            raise JLInputError(f"model.eps must be a number in (0, 1), got {eps!r}")
        for name, value in (("model.L", L), ("model.K", K), ("model.rho", rho), ("model.pgd_radius", pgd_radius),
                            ("model.max_step", max_step), ("model.max_curvature_step", max_curvature_step),
                            ("model.pgd_threshold", pgd_threshold)):
            if not (isinstance(value, (int, float)) and value > 0):
                raise JLInputError(f"{name} must be a number > 0, got {value!r}")
        if mode != "norms":
            raise JLInputError("model=exact implements the paper's norms objective only (model.mode=norms)")
        self.save_hyperparameters(ignore=["optimizer", "scheduler"])
        self.k, self.dim, self.eps, self.method, self.mode = k, dim, float(eps), method, mode
        self.reg_weight, self.L, self.K, self.rho = float(reg_weight), float(L), float(K), float(rho)
        self.lanczos_iters, self.pgd_radius, self.pgd_interval = lanczos_iters, float(pgd_radius), pgd_interval
        self.log_every = log_every
        gen = torch.Generator().manual_seed(int(init_seed))
        mean = torch.zeros(k, dim, dtype=torch.float64) if init_mean == "zeros" else \
            init_scale * torch.randn(k, dim, generator=gen, dtype=torch.float64)
        self.mean = nn.Parameter(mean)
        self.variance = make_variance(variance, init_variance).double()
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.generator = torch.Generator().manual_seed(int(init_seed) + 1)
        self.automatic_optimization = False
        self.gradient_steps = self.curvature_steps = self.perturbations = 0
        self.stopped_at: int | None = None
        self._last_perturbation = -10**9
        self._pgd_calls = 0
        self._perturbed_from: tuple | None = None
        self.pgd_threshold = float(pgd_threshold)
        self.backtracking, self.max_step = bool(backtracking), float(max_step)
        self.max_curvature_step = float(max_curvature_step)
        self._eta = 1.0 / self.L

    @property
    def embedding(self) -> torch.Tensor:
        """The deterministic matrix M / sqrt(k), shape (k, d)."""
        return self.mean.detach() / math.sqrt(self.k)

    @property
    def deterministic(self) -> bool:
        return self.variance.is_frozen

    def optimization_report(self) -> dict:
        """How the run went, for summary.json: steps of each kind and where it stopped."""
        return {"method": self.method, "eps": self.eps, "gradient_steps": self.gradient_steps,
                "curvature_steps": self.curvature_steps, "perturbations": self.perturbations,
                "stopped_at": self.stopped_at, "sigma2": self.variance.current()}

    def objective(self, points: torch.Tensor) -> torch.Tensor:
        return exact_objective(self.mean, self.variance.value(), points.double(), self.eps, self.reg_weight)

    # ----------------------------------------------------------- flat view
    def _params(self) -> list[nn.Parameter]:
        return [p for p in (self.mean, self.variance.theta) if p.requires_grad]

    @torch.no_grad()
    def _add_(self, direction: torch.Tensor) -> None:
        offset = 0
        for p in self._params():
            p.add_(direction[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        self.variance.project_()

    def _snapshot(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self._params()]

    @torch.no_grad()
    def _restore(self, saved: list[torch.Tensor]) -> None:
        """Undo trial steps exactly (the sigma^2 projection is not invertible)."""
        for p, value in zip(self._params(), saved):
            p.copy_(value)

    def _gradient(self, points: torch.Tensor, create_graph: bool):
        """g and its gradient, projected onto the feasible set: with a raw sigma^2 at its
        bound 0, a positive d g / d sigma^2 (the regularizer) points out of the domain and is
        dropped, so a point with sigma^2 = 0 can be stationary (Algorithm 1 then stops)."""
        value = self.objective(points)
        grads = list(torch.autograd.grad(value, self._params(), create_graph=create_graph))
        theta = self.variance.theta
        if theta.requires_grad and self.variance.current() <= 0.0 and float(grads[-1].detach()) > 0:
            grads[-1] = grads[-1] * 0
        return value, torch.cat([g.reshape(-1) for g in grads])

    # -------------------------------------------------------------- steps
    @torch.no_grad()
    def _gradient_step(self, points: torch.Tensor, value: float, grad: torch.Tensor) -> None:
        """theta <- theta - eta grad with eta = 1/L when ``backtracking`` is off; with it, eta
        starts at twice the last accepted step (capped at ``max_step``) and is halved until
        the Armijo condition g(theta - eta grad) <= g - eta ||grad||^2 / 2 holds: an estimate
        of the local 1/L, which changes by orders of magnitude as sigma^2 shrinks. A raw
        sigma^2 is projected back to >= 0 (a projected gradient step)."""
        self.gradient_steps += 1
        if not self.backtracking:
            self._add_(-grad / self.L)
            return
        eta = min(2 * self._eta, self.max_step)
        sq = float(grad @ grad)
        saved = self._snapshot()
        for _ in range(60):
            self._add_(-eta * grad)
            trial = float(self.objective(points))
            # strict decrease too: a step too small to change g in float64 "passes" Armijo's
            # test with equality and would pin eta at a no-op forever
            if trial < value and trial <= value - 0.5 * eta * sq:
                self._eta = eta
                return
            self._restore(saved)
            eta /= 2
        self._eta = 1.0 / self.L  # no representable descent along -grad: start afresh next step

    @torch.no_grad()
    def _curvature_step(self, points: torch.Tensor, value: float, lam: float, vector: torch.Tensor,
                        grad: torch.Tensor) -> bool:
        """A step along the eigenvector of lambda_min, signed to descend, of length |lambda| / K
        (capped at ``max_curvature_step``); with ``backtracking``, halved until g decreases.
        False when no tried length decreases g."""
        sign = -1.0 if float(grad.detach() @ vector) > 0 else 1.0
        length = min(abs(lam) / self.K, self.max_curvature_step)
        if not self.backtracking:
            self._add_(sign * length * vector)
            return True
        saved = self._snapshot()
        for _ in range(30):
            self._add_(sign * length * vector)
            if float(self.objective(points)) < value:
                return True
            self._restore(saved)
            length /= 2
        return False

    def _hessian_step(self, points: torch.Tensor) -> dict:
        value, grad = self._gradient(points, create_graph=True)
        grad_norm = float(grad.detach().norm())
        info = {"value": float(value.detach()), "grad_norm": grad_norm, "lambda_min": math.nan}
        if grad_norm > self.rho:
            self._gradient_step(points, float(value.detach()), grad.detach())
            info["step_type"] = 0.0
            return info
        params = self._params()

        def hvp(v):
            # allow_unused: at sigma^2 = 0 the indicator limit leaves theta out of the graph
            parts = torch.autograd.grad(grad, params, v, retain_graph=True, allow_unused=True)
            return torch.cat([(torch.zeros_like(p) if d is None else d).reshape(-1)
                              for p, d in zip(params, parts)]).detach()

        lam, vector = lanczos_min_eigen(hvp, grad.numel(), self.lanczos_iters, self.generator)
        info["lambda_min"] = lam
        if lam < -math.sqrt(self.K * self.rho) and self._curvature_step(points, info["value"], lam, vector, grad):
            self.curvature_steps += 1
            info["step_type"] = 1.0
        else:  # an approximate second-order stationary point: Algorithm 1 returns M
            self._stop(info)
        return info

    def _pgd_step(self, points: torch.Tensor) -> dict:
        value, grad = self._gradient(points, create_graph=False)
        grad_norm = float(grad.norm())
        info = {"value": float(value.detach()), "grad_norm": grad_norm, "lambda_min": math.nan, "step_type": 0.0}
        step = self._pgd_calls  # counted here, so the schedule also holds outside a Trainer
        self._pgd_calls += 1
        since = step - self._last_perturbation
        if self._perturbed_from is not None and since >= self.pgd_interval:
            # Jin et al.'s stopping rule: a perturbation that did not lead to a decrease of at
            # least pgd_threshold within pgd_interval steps means there was no direction of
            # escape: the point it was taken from is an approximate SOSP, and PGD returns it.
            before_value, before_params = self._perturbed_from
            self._perturbed_from = None
            if info["value"] > before_value - self.pgd_threshold:
                self._restore(before_params)
                self._stop(info)
                return info
        if grad_norm <= self.rho and since >= self.pgd_interval:
            self._perturbed_from = (info["value"], self._snapshot())
            direction = torch.randn(grad.numel(), dtype=grad.dtype, generator=self.generator)
            radius = self.pgd_radius * torch.rand(1, generator=self.generator, dtype=grad.dtype) ** (1 / grad.numel())
            with torch.no_grad():
                self._add_(direction / direction.norm() * radius)
            self._last_perturbation = step
            self.perturbations += 1
            info["step_type"] = 3.0
        else:
            self._gradient_step(points, float(value.detach()), grad)
        return info

    def _stop(self, info: dict) -> None:
        """An approximate second-order stationary point: the algorithm returns M."""
        self.stopped_at = int(self.global_step)
        info["step_type"] = 2.0
        if self._trainer is not None:
            self.trainer.should_stop = True

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> None:
        optimizer = self.optimizers()
        if self.method == "adam":
            value = self.objective(batch)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            grad_norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in self._params() if p.grad is not None))
            optimizer.step()
            self.variance.project_()
            scheduler = self.lr_schedulers()
            if scheduler is not None:
                scheduler.step()
            info = {"value": float(value.detach()), "grad_norm": grad_norm, "lambda_min": math.nan, "step_type": 0.0}
        else:
            info = self._hessian_step(batch) if self.method == "hessian" else self._pgd_step(batch)
            optimizer.step()  # the stand-in optimizer: counts the step (global_step), changes nothing
        if is_log_step(self.global_step, self.log_every):  # global_step counts this step now
            self.log_dict({"exact/objective": info["value"], "exact/grad_norm": info["grad_norm"],
                           "exact/lambda_min": info["lambda_min"], "exact/step_type": info["step_type"],
                           "train/sigma2": self.variance.current()}, on_step=True, on_epoch=False)

    def configure_optimizers(self):
        if self.method != "adam":
            # Algorithm 1 and PGD update the parameters themselves; Lightning still needs an
            # optimizer to count steps, so a no-op SGD (lr 0) stands in.
            return torch.optim.SGD(self.parameters(), lr=0.0)
        return build_optimizers(self.optimizer_factory, self.scheduler_factory, list(self.parameters()))
