"""The runnable examples in public docstrings run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["jl_lightning.sparse_rows", "jl_lightning.apps.estimator"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    pytest.importorskip("scipy")
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
