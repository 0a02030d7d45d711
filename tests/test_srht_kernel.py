"""The compiled SRHT kernel (numba, optional) against the torch transform and the explicit
Hadamard matrix; skipped where numba is not installed."""

import numpy as np
import pytest
import torch

from jl_lightning.baselines import SRHT, srht_kernel

pytest.importorskip("numba")


def _pair(k, d, seed=0):
    return (
        SRHT(k, d, torch.Generator().manual_seed(seed), backend="numba"),
        SRHT(k, d, torch.Generator().manual_seed(seed), backend="torch"),
    )


@pytest.mark.parametrize("d,k", [(1, 1), (3, 2), (20, 6), (64, 1), (64, 64), (100, 17), (1000, 64), (1024, 1024)])
def test_compiled_srht_equals_the_torch_transform(d, k):
    fast, slow = _pair(k, d)
    X = torch.randn(37, d, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(fast.apply(X), slow.apply(X), rtol=0, atol=1e-12)
    out32 = fast.apply(X.float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32, slow.apply(X.float()), rtol=1e-5, atol=1e-5)


def test_every_split_of_the_levels_gives_the_explicit_hadamard_map():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    d, p, k = 50, 64, 9
    rng = np.random.default_rng(0)
    signs, rows = rng.choice([-1.0, 1.0], d), rng.permutation(p)[:k]
    X = rng.standard_normal((5, d))
    H = scipy_linalg.hadamard(p).astype(float)
    expected = (np.pad(X * signs, ((0, 0), (0, p - d))) @ H.T)[:, rows] * 0.25
    for m in range(7):  # 0 = the k products with full Hadamard rows ... 6 = the full transform
        L = p >> m
        hi, lo = rows // L, rows % L
        table = 0.25 * H[lo][:, :L] if L > 1 else np.full((k, 1), 0.25)
        out = srht_kernel.compiled().srht_rows(X, signs, hi, np.ascontiguousarray(table), m, 1)
        np.testing.assert_allclose(out, expected, atol=1e-12, err_msg=f"m={m}")


def test_the_plan_takes_about_log2_k_levels():
    assert srht_kernel.levels(64, 4096) in (5, 6)  # 7 p operations instead of 12 p
    assert srht_kernel.levels(1, 4096) == 0  # one dot product with a Hadamard row
    assert srht_kernel.levels(4096, 4096) >= 11  # every output: (nearly) the full transform


def test_thread_count_does_not_change_the_result_and_nan_stays_in_its_row():
    fast, _ = _pair(16, 300)
    X = np.random.default_rng(2).standard_normal((101, 300))
    plan = srht_kernel.make_plan(fast.rows.numpy(), fast.p, fast.scale, np.float64)
    one = srht_kernel.apply(X, fast.signs.numpy(), plan, threads=1)
    np.testing.assert_array_equal(one, srht_kernel.apply(X, fast.signs.numpy(), plan, threads=2))
    X[7, 3] = np.nan
    out = srht_kernel.apply(X, fast.signs.numpy(), plan, threads=2)
    assert np.isnan(out[7]).all() and np.isfinite(np.delete(out, 7, axis=0)).all()


def test_backend_choice_is_checked_and_gradients_use_torch():
    with pytest.raises(ValueError, match="backend must be one of"):
        SRHT(4, 16, torch.Generator(), backend="cuda")
    fast = SRHT(4, 16, torch.Generator().manual_seed(0), backend="numba")
    with pytest.raises(ValueError, match="without gradient"):
        fast.apply(torch.randn(3, 16, dtype=torch.float64, requires_grad=True))
    auto = SRHT(4, 16, torch.Generator().manual_seed(0))
    x = torch.randn(3, 16, dtype=torch.float64, requires_grad=True)
    auto.apply(x).pow(2).sum().backward()  # the torch transform, differentiable
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_numba_backend_without_numba_says_how_to_install(monkeypatch):
    monkeypatch.setattr(srht_kernel, "AVAILABLE", False)
    with pytest.raises(ImportError, match=r"\.\[fast\]"):
        SRHT(4, 16, torch.Generator(), backend="numba")
    out = SRHT(4, 16, torch.Generator().manual_seed(0)).apply(torch.eye(16, dtype=torch.float64))
    assert out.shape == (16, 4)


def test_auto_takes_the_kernel_for_large_inputs_only_and_jl_train_does_not_import_numba():
    """Importing numba and loading the kernel costs more than it saves on small inputs: the
    "auto" backend keeps those on torch, and a process that imports jl-train, or applies the
    SRHT to a small input, never imports numba."""
    import subprocess
    import sys

    d = 1024
    auto = SRHT(8, d, torch.Generator().manual_seed(0))
    small = torch.zeros(srht_kernel.KERNEL_MIN_ELEMENTS // d - 1, d, dtype=torch.float64)
    large = torch.zeros(srht_kernel.KERNEL_MIN_ELEMENTS // d, d, dtype=torch.float64)
    assert not auto._use_kernel(small) and auto._use_kernel(large)
    assert SRHT(8, d, torch.Generator(), backend="numba")._use_kernel(small)
    code = (
        "import sys, torch, jl_lightning.apps.train\n"
        "from jl_lightning.baselines import SRHT\n"
        "SRHT(8, 64, torch.Generator()).apply(torch.ones(100, 64, dtype=torch.float64))\n"
        "print('numba' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
