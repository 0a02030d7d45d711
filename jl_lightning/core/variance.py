"""Parameterizations of the sampler's variance sigma^2.

Both never produce NaN and both can be frozen at exactly 0 (the switch to the
deterministic mean):

* ``raw`` - the paper's parameter: sigma^2 itself, projected back to >= 0 after
  every optimizer step (and clamped in the forward pass). Adam can drive it to
  exactly 0, where it stays.
* ``log`` - sigma^2 = exp(theta): always positive, decays geometrically, and
  reaches 0 only through the switch.

``sigma()`` is a safe square root: at sigma^2 = 0 its gradient is 0, not the
infinite d sqrt(s)/ds, so a raw sigma^2 that reaches 0 cannot poison M.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from jl_lightning.errors import JLInputError


class Variance(nn.Module):
    """Base class: subclasses define ``_unconstrained_value()`` and ``_init_theta()``."""

    def __init__(self, init: float):
        super().__init__()
        if not (isinstance(init, (int, float)) and math.isfinite(init) and init >= 0):
            raise JLInputError(f"model.init_variance must be a finite number >= 0, got {init!r}")
        self.theta = nn.Parameter(torch.tensor(self._init_theta(float(init)), dtype=torch.float32))
        # A buffer, so a checkpoint restores the frozen state with the parameter;
        # ``is_frozen`` mirrors it as a Python bool, read every step without a tensor op.
        self.register_buffer("frozen", torch.tensor(False))
        self.is_frozen = False

    def _init_theta(self, init: float) -> float:
        raise NotImplementedError

    def _unconstrained_value(self) -> torch.Tensor:
        raise NotImplementedError

    def _float_value(self, theta: float) -> float:
        raise NotImplementedError

    def value(self) -> torch.Tensor:
        """sigma^2 >= 0; exactly 0 once frozen."""
        if self.is_frozen:
            return torch.zeros((), device=self.theta.device)
        return self._unconstrained_value()

    def current(self) -> float:
        """sigma^2 as a Python float, for the callbacks that watch it every step.

        A scalar read and plain Python arithmetic, cheaper than a tensor op.
        """
        return 0.0 if self.is_frozen else self._float_value(self.theta.item())

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        self.is_frozen = bool(self.frozen)
        self.theta.requires_grad_(not self.is_frozen)

    def sigma(self, s2: torch.Tensor | None = None) -> torch.Tensor:
        """sqrt(sigma^2) with a zero (not infinite) gradient at sigma^2 = 0.

        Pass ``s2 = self.value()`` when it is already computed.
        """
        if s2 is None:
            s2 = self.value()
        positive = s2 > 0
        safe = torch.where(positive, s2, torch.ones_like(s2))
        return torch.where(positive, safe.sqrt(), torch.zeros_like(s2))

    def project_(self) -> None:
        """Called after each optimizer step; keeps the parameter in its domain."""

    def freeze_at_zero(self) -> None:
        """Set sigma^2 to exactly 0 for good; theta stops receiving gradients."""
        self.frozen.fill_(True)
        self.is_frozen = True
        self.theta.requires_grad_(False)


class RawVariance(Variance):
    """The paper's raw sigma^2, clamped to >= 0."""

    def _init_theta(self, init: float) -> float:
        return init

    def _unconstrained_value(self) -> torch.Tensor:
        return self.theta.clamp(min=0.0)

    def _float_value(self, theta: float) -> float:
        return max(theta, 0.0)

    @torch.no_grad()
    def project_(self) -> None:
        self.theta.clamp_(min=0.0)


class LogVariance(Variance):
    """sigma^2 = exp(theta)."""

    def _init_theta(self, init: float) -> float:
        if init <= 0:
            raise JLInputError("model.init_variance must be > 0 with model.variance=log")
        return math.log(init)

    def _unconstrained_value(self) -> torch.Tensor:
        return self.theta.exp()

    def _float_value(self, theta: float) -> float:
        return math.exp(theta)


PARAMETERIZATIONS = {"raw": RawVariance, "log": LogVariance}


def make_variance(kind: str, init: float) -> Variance:
    try:
        cls = PARAMETERIZATIONS[kind]
    except KeyError:
        raise JLInputError(f"model.variance must be one of {sorted(PARAMETERIZATIONS)}, got {kind!r}") from None
    return cls(init)
