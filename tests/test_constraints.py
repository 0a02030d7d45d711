"""The declarative parameter constraints: what each accepts, and the one message."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jl_lightning.constraints import (
    FINITE,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    Number,
    OneOf,
    Steps,
    check,
    check_params,
)
from jl_lightning.errors import JLInputError


@pytest.mark.parametrize(
    "constraint, good, bad",
    [
        (POSITIVE_INT, [1, 7, np.int64(3)], [0, -1, 1.0, 2.5, True, None, "3", math.inf]),
        (NON_NEGATIVE_INT, [0, 5], [-1, 0.5, False]),
        (NON_NEGATIVE, [0, 0.0, 2.5, np.float32(1)], [-1e-9, True, math.nan, math.inf, None]),
        (POSITIVE, [1e-12, 3], [0, -1, False]),
        (FINITE, [-3.5, 0, 1e300], [math.inf, -math.inf, math.nan, "1"]),
        (Number(low=0, high=1, low_open=True), [1, 0.5, 1e-9], [0, 1.0000001, -0.5]),
        (Number(low=0, high=1, high_open=True), [0, 0.999], [1, -0.1]),
        (Number(low=1, integer=True, none=True), [None, 2], [0, 1.5]),
        (OneOf(("norms", "pairs")), ["norms", "pairs"], ["Norms", 1, None]),
        (Steps(), [[], [0, 5, 6400], (1, 2)], ["12", [1, -2], [1.5], [True], 3]),
    ],
)
def test_each_constraint_accepts_exactly_its_values(constraint, good, bad):
    assert all(constraint.accepts(v) for v in good)
    assert not any(constraint.accepts(v) for v in bad)


def test_the_message_names_the_option_and_what_it_accepts():
    cases = [
        (POSITIVE_INT, "a positive integer"),
        (NON_NEGATIVE_INT, "an integer >= 0"),
        (NON_NEGATIVE, "a number >= 0"),
        (POSITIVE, "a number > 0"),
        (FINITE, "a finite number"),
        (Number(low=0, high=1, low_open=True), "a fraction in (0, 1]"),
        (Number(low=1, integer=True, none=True), "a positive integer or null"),
        (Number(low=0, low_open=True, what="a number of seconds > 0"), "a number of seconds > 0"),
    ]
    for constraint, words in cases:
        with pytest.raises(JLInputError) as err:
            check("model.x", "bad", constraint)
        assert str(err.value) == f"model.x must be {words}, got 'bad'"


def test_check_converts_integers_and_checks_only_what_is_declared():
    assert type(check("model.k", np.int64(4), POSITIVE_INT)) is int
    values = {"k": np.int32(3), "lr": 0.1, "unchecked": object()}
    assert check_params(values, {"k": POSITIVE_INT, "lr": POSITIVE, "absent": POSITIVE}, "model.") == {
        "k": 3,
        "lr": 0.1,
    }
    with pytest.raises(JLInputError, match=r"^model\.lr must be a number > 0, got 0$"):
        check_params({"lr": 0}, {"lr": POSITIVE}, "model.")
