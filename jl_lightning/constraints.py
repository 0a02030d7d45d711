"""Parameter constraints, declared once next to each parameter list and checked here.

As scikit-learn's ``_parameter_constraints``: a class or function states what each option
accepts (:class:`Number`, :class:`OneOf`, :class:`Steps`) and calls :func:`check_params`;
the one message for a bad value names the option as the user writes it (``model.k``,
``baseline.budget_s``) and what it accepts. Booleans are never numbers here (YAML's
``true`` is not 1).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

from jl_lightning.errors import JLInputError


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class Number:
    """A real (or, with ``integer``, an integral) number in [low, high], each end open when
    ``low_open`` / ``high_open``; ``none``: null is accepted too; ``what``: the words of the
    message where the interval's own ("a positive integer", "a number >= 0") would not do."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    none: bool = False
    what: str | None = None

    def accepts(self, value) -> bool:
        if value is None:
            return self.none
        if not _is_number(value) or not math.isfinite(value):
            return False
        if self.integer and not isinstance(value, numbers.Integral):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def describe(self) -> str:
        if self.what:
            return self.what
        kind = "integer" if self.integer else "number"
        if self.integer and self.low == 1 and self.high is None:
            words = "a positive integer"
        elif self.low is not None and self.high is not None:
            kind = "fraction" if (self.low, self.high, self.integer) == (0, 1, False) else kind
            words = (
                f"a {kind} in {'(' if self.low_open else '['}{self.low:g}, "
                f"{self.high:g}{')' if self.high_open else ']'}"
            )
        elif self.low is not None:
            words = f"{'an' if self.integer else 'a'} {kind} {'>' if self.low_open else '>='} {self.low:g}"
        elif self.high is not None:
            words = f"{'an' if self.integer else 'a'} {kind} {'<' if self.high_open else '<='} {self.high:g}"
        else:
            words = f"a finite {kind}"
        return words + (" or null" if self.none else "")

    def convert(self, value):
        if value is None:
            return None
        return int(value) if self.integer else value


@dataclass(frozen=True)
class OneOf:
    """One of ``choices`` (compared with ==)."""

    choices: tuple

    def accepts(self, value) -> bool:
        return any(value == choice and type(value) is type(choice) for choice in self.choices)

    def describe(self) -> str:
        return f"one of {list(self.choices)}"

    def convert(self, value):
        return value


@dataclass(frozen=True)
class Steps:
    """A list of step numbers (integers >= 0)."""

    def accepts(self, value) -> bool:
        if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
            return False
        return all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0 for v in value)

    def describe(self) -> str:
        return "a list of steps (integers >= 0)"

    def convert(self, value):
        return [int(v) for v in value]


POSITIVE_INT = Number(low=1, integer=True)
NON_NEGATIVE_INT = Number(low=0, integer=True)
NON_NEGATIVE = Number(low=0)
POSITIVE = Number(low=0, low_open=True)
FINITE = Number()


def check(option: str, value, constraint):
    """``value``, converted (an int for an integer constraint), when ``constraint`` accepts it;
    otherwise a :class:`JLInputError`: ``<option> must be <what it accepts>, got <value>``."""
    if not constraint.accepts(value):
        raise JLInputError(f"{option} must be {constraint.describe()}, got {value!r}")
    return constraint.convert(value)


def check_params(values: Mapping[str, Any], constraints: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every ``values[name]`` that has a constraint, checked and converted, in the order the
    constraints are declared; the option is named ``prefix + name``."""
    return {
        name: check(prefix + name, values[name], constraint)
        for name, constraint in constraints.items()
        if name in values
    }
