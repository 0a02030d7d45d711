"""Second-order steppers for a smooth objective over a few parameter tensors: Lanczos,
Hessian descent (the paper's Algorithm 1) and perturbed gradient descent (Jin et al. 2017).

They are plain objects: a module builds one and calls ``step(problem)`` once per training
step. A *problem* (:class:`Problem`) gives the objective, the parameters that move, a
projection back into the feasible set, and which gradient entries to drop at a bound.

* :class:`GradientStep`: theta <- theta - eta grad, with eta = 1/L, or with Armijo
  backtracking from twice the last accepted step (capped at ``max_step``): the local 1/L
  changes by orders of magnitude as sigma^2 shrinks. A trial must strictly decrease g,
  and failed trials are undone exactly.
* :class:`HessianDescent`: a gradient step while ||grad g|| > rho; otherwise the most
  negative Hessian eigenvalue lambda by Lanczos on Hessian-vector products (the Hessian
  is never formed). If lambda < -sqrt(K rho), a step of length |lambda| / K along its
  eigenvector, signed to descend (halved until g decreases with backtracking); else the
  point is an approximate second-order stationary point and the algorithm stops.
* :class:`PerturbedGD`: gradient steps; when ||grad g|| <= rho and no perturbation
  happened in the last ``interval`` steps, a uniform perturbation in a ball of ``radius``.
  If g has not dropped by ``threshold`` ``interval`` steps after a perturbation, PGD
  returns the point it perturbed (Jin et al.'s stopping rule).

Every ``step`` returns a dict: ``value``, ``grad_norm``, ``lambda_min`` (NaN when not
computed) and ``step_type`` (0 gradient, 1 curvature, 2 stopped, 3 perturbation).
"""

from __future__ import annotations

import math
from typing import Callable, Protocol

import torch

GRADIENT, CURVATURE, STOPPED, PERTURBATION = 0.0, 1.0, 2.0, 3.0


def lanczos_min_eigen(
    hvp: Callable[[torch.Tensor], torch.Tensor],
    dim: int,
    iters: int,
    generator: torch.Generator | None = None,
    dtype=torch.float64,
) -> tuple[float, torch.Tensor]:
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
        w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)  # full reorthogonalization, twice
        w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        beta[j] = w.norm()
        if beta[j] < 1e-12:
            steps = j + 1
            break
        basis[j + 1] = w / beta[j]
    T = torch.diag(alpha[:steps]) + torch.diag(beta[: steps - 1], 1) + torch.diag(beta[: steps - 1], -1)
    values, vectors = torch.linalg.eigh(T)
    vector = basis[:steps].T @ vectors[:, 0]
    return float(values[0]), vector / vector.norm()


class Problem(Protocol):
    """What a stepper needs: g, the moving parameters, the projection, and the bound."""

    def objective(self) -> torch.Tensor: ...

    def parameters(self) -> list[torch.Tensor]: ...

    def project_(self) -> None: ...

    def drop_at_bound(self, grads: list[torch.Tensor]) -> list[torch.Tensor]: ...


class FlatView:
    """The moving parameters of a problem as one flat vector: add, snapshot, restore."""

    def __init__(self, problem: Problem):
        self.problem = problem

    @torch.no_grad()
    def add_(self, direction: torch.Tensor) -> None:
        offset = 0
        for p in self.problem.parameters():
            p.add_(direction[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        self.problem.project_()

    def snapshot(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.problem.parameters()]

    @torch.no_grad()
    def restore(self, saved: list[torch.Tensor]) -> None:
        """Undo trial steps exactly (a projection is not invertible)."""
        for p, value in zip(self.problem.parameters(), saved):
            p.copy_(value)

    def gradient(self, create_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(g, its projected gradient as one flat vector)."""
        value = self.problem.objective()
        grads = list(torch.autograd.grad(value, self.problem.parameters(), create_graph=create_graph))
        grads = self.problem.drop_at_bound(grads)
        return value, torch.cat([g.reshape(-1) for g in grads])


class GradientStep:
    """A (projected) gradient step of size 1/L, or found by Armijo backtracking."""

    def __init__(self, L: float, backtracking: bool = True, max_step: float = 1.0):
        self.L, self.backtracking, self.max_step = float(L), bool(backtracking), float(max_step)
        self.eta = 1.0 / self.L
        self.count = 0

    @torch.no_grad()
    def __call__(self, view: FlatView, value: float, grad: torch.Tensor) -> None:
        self.count += 1
        if not self.backtracking:
            view.add_(-grad / self.L)
            return
        eta = min(2 * self.eta, self.max_step)
        sq = float(grad @ grad)
        saved = view.snapshot()
        for _ in range(60):
            view.add_(-eta * grad)
            trial = float(view.problem.objective())
            # strict decrease too: a step too small to change g in float64 "passes" Armijo's
            # test with equality and would pin eta at a no-op forever
            if trial < value and trial <= value - 0.5 * eta * sq:
                self.eta = eta
                return
            view.restore(saved)
            eta /= 2
        self.eta = 1.0 / self.L  # no representable descent along -grad: start afresh next step


class _StepperState:
    """A stepper's state for a checkpoint: its counters and flags, its gradient step's
    (accepted step size, count) and its generator's state, so that a resumed run takes the
    steps the uninterrupted one would have taken."""

    generator: torch.Generator
    gradient_step: GradientStep

    def state_dict(self) -> dict:
        state = {k: v for k, v in vars(self).items() if k not in ("generator", "gradient_step")}
        return dict(state, generator=self.generator.get_state(), gradient_step=dict(vars(self.gradient_step)))

    def load_state_dict(self, state: dict) -> None:
        state = dict(state)
        self.generator.set_state(state.pop("generator"))
        vars(self.gradient_step).update(state.pop("gradient_step"))
        vars(self).update(state)


class HessianDescent(_StepperState):
    """Algorithm 1 (see the module docstring)."""

    def __init__(self, L: float, K: float, rho: float, lanczos_iters: int = 40, backtracking: bool = True,
                 max_step: float = 1.0, max_curvature_step: float = 10.0, seed: int = 1):  # fmt: skip
        self.K, self.rho, self.lanczos_iters = float(K), float(rho), int(lanczos_iters)
        self.backtracking, self.max_curvature_step = bool(backtracking), float(max_curvature_step)
        self.gradient_step = GradientStep(L, backtracking, max_step)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.curvature_steps = 0
        self.stopped = False

    @torch.no_grad()
    def _curvature_step(
        self, view: FlatView, value: float, lam: float, vector: torch.Tensor, grad: torch.Tensor
    ) -> bool:
        """Along the eigenvector, signed to descend, length |lambda| / K (capped); with
        backtracking, halved until g decreases. False when no tried length decreases g."""
        sign = -1.0 if float(grad.detach() @ vector) > 0 else 1.0
        length = min(abs(lam) / self.K, self.max_curvature_step)
        if not self.backtracking:
            view.add_(sign * length * vector)
            return True
        saved = view.snapshot()
        for _ in range(30):
            view.add_(sign * length * vector)
            if float(view.problem.objective()) < value:
                return True
            view.restore(saved)
            length /= 2
        return False

    def step(self, problem: Problem) -> dict:
        view = FlatView(problem)
        value, grad = view.gradient(create_graph=True)
        grad_norm = float(grad.detach().norm())
        info = {"value": float(value.detach()), "grad_norm": grad_norm, "lambda_min": math.nan}
        if grad_norm > self.rho:
            self.gradient_step(view, info["value"], grad.detach())
            info["step_type"] = GRADIENT
            return info
        params = problem.parameters()

        def hvp(v):
            # allow_unused: a parameter can drop out of the graph (sigma^2's limit at 0)
            parts = torch.autograd.grad(grad, params, v, retain_graph=True, allow_unused=True)
            return torch.cat(
                [(torch.zeros_like(p) if d is None else d).reshape(-1) for p, d in zip(params, parts)]
            ).detach()

        lam, vector = lanczos_min_eigen(hvp, grad.numel(), self.lanczos_iters, self.generator)
        info["lambda_min"] = lam
        if lam < -math.sqrt(self.K * self.rho) and self._curvature_step(view, info["value"], lam, vector, grad):
            self.curvature_steps += 1
            info["step_type"] = CURVATURE
        else:  # an approximate second-order stationary point: Algorithm 1 returns M
            self.stopped = True
            info["step_type"] = STOPPED
        return info

    def report(self) -> dict:
        return {"gradient_steps": self.gradient_step.count, "curvature_steps": self.curvature_steps, "perturbations": 0}


class PerturbedGD(_StepperState):
    """Perturbed gradient descent with Jin et al.'s stopping rule (see the module docstring)."""

    def __init__(self, L: float, rho: float, radius: float = 1.0, interval: int = 1000, threshold: float = 1e-3,
                 backtracking: bool = True, max_step: float = 1.0, seed: int = 1):  # fmt: skip
        self.rho, self.radius, self.interval, self.threshold = (
            float(rho),
            float(radius),
            int(interval),
            float(threshold),
        )
        self.gradient_step = GradientStep(L, backtracking, max_step)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.calls = 0
        self.perturbations = 0
        self.last_perturbation = -(10**9)
        self.perturbed_from: tuple | None = None
        self.stopped = False

    def step(self, problem: Problem) -> dict:
        view = FlatView(problem)
        value, grad = view.gradient(create_graph=False)
        grad_norm = float(grad.norm())
        info = {"value": float(value.detach()), "grad_norm": grad_norm, "lambda_min": math.nan, "step_type": GRADIENT}
        step = self.calls
        self.calls += 1
        since = step - self.last_perturbation
        if self.perturbed_from is not None and since >= self.interval:
            # no decrease of at least `threshold` within `interval` steps after a perturbation:
            # no direction of escape, so the perturbed point is an approximate SOSP; return it
            before_value, before_params = self.perturbed_from
            self.perturbed_from = None
            if info["value"] > before_value - self.threshold:
                view.restore(before_params)
                self.stopped = True
                info["step_type"] = STOPPED
                return info
        if grad_norm <= self.rho and since >= self.interval:
            self.perturbed_from = (info["value"], view.snapshot())
            direction = torch.randn(grad.numel(), dtype=grad.dtype, generator=self.generator)
            radius = self.radius * torch.rand(1, generator=self.generator, dtype=grad.dtype) ** (1 / grad.numel())
            with torch.no_grad():
                view.add_(direction / direction.norm() * radius)
            self.last_perturbation = step
            self.perturbations += 1
            info["step_type"] = PERTURBATION
        else:
            self.gradient_step(view, info["value"], grad)
        return info

    def report(self) -> dict:
        return {"gradient_steps": self.gradient_step.count, "curvature_steps": 0, "perturbations": self.perturbations}
