"""Data loading and validation: every bad input gets one clear JLInputError."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jl_lightning.errors import JLInputError
from jl_lightning.io.sources import ArrayPoints, FilePoints, GaussianPoints
from jl_lightning.io.validation import validate_k, validate_points
from jl_lightning.lightning.datamodule import JLDataModule


def load_validated(path, key=None, normalize=True):
    dm = JLDataModule(FilePoints(str(path), key), normalize=normalize)
    dm.setup("fit")
    return dm


def test_synthetic_points_are_unit_norm_and_seeded():
    a = JLDataModule(GaussianPoints(n=50, d=20, seed=3))
    a.setup()
    b = JLDataModule(GaussianPoints(n=50, d=20, seed=3))
    b.setup()
    np.testing.assert_allclose(np.linalg.norm(a.points, axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(a.points, b.points)
    assert (a.n, a.dim) == (50, 20)
    assert a.train_points.dtype == torch.float32


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".pt", ".csv"])
def test_each_file_format_loads_and_normalizes(tmp_path, suffix):
    data = np.random.default_rng(0).standard_normal((7, 4)) * 3
    path = tmp_path / f"points{suffix}"
    if suffix == ".npy":
        np.save(path, data)
    elif suffix == ".npz":
        np.savez(path, x=data)
    elif suffix == ".pt":
        torch.save(torch.from_numpy(data), path)
    else:
        np.savetxt(path, data, delimiter=",", header="a,b,c,d", comments="")
    dm = load_validated(path)
    assert dm.points.shape == (7, 4)
    np.testing.assert_allclose(dm.points, data / np.linalg.norm(data, axis=1, keepdims=True), rtol=1e-12)


def test_normalize_can_be_switched_off(tmp_path):
    data = np.arange(1, 13, dtype=float).reshape(3, 4)
    np.save(tmp_path / "p.npy", data)
    dm = load_validated(tmp_path / "p.npy", normalize=False)
    # not normalized: only divided by the largest entry
    assert dm.data_scale == 12.0 and np.abs(dm.points).max() == 1.0
    np.testing.assert_allclose(dm.points * dm.data_scale, data, rtol=1e-15)


def test_npz_key_selects_an_entry(tmp_path):
    np.savez(tmp_path / "p.npz", a=np.ones((3, 2)), b=np.full((4, 2), 2.0))
    assert load_validated(tmp_path / "p.npz", key="b").n == 4
    with pytest.raises(JLInputError, match=r"holds 2 entries.*data.source.key"):
        load_validated(tmp_path / "p.npz")
    with pytest.raises(JLInputError, match=r"no entry 'c'"):
        load_validated(tmp_path / "p.npz", key="c")


def test_missing_file(tmp_path):
    with pytest.raises(JLInputError, match=r"data file not found: .*nope\.npy"):
        load_validated(tmp_path / "nope.npy")


def test_unsupported_suffix(tmp_path):
    (tmp_path / "p.txt").write_text("1,2\n")
    with pytest.raises(JLInputError, match=r"unsupported file type '\.txt'"):
        load_validated(tmp_path / "p.txt")


def test_non_numeric_npy(tmp_path):
    np.save(tmp_path / "s.npy", np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(JLInputError, match=r"s\.npy: expected a numeric array, got dtype <U1"):
        load_validated(tmp_path / "s.npy")


def test_non_numeric_csv_names_line_and_column(tmp_path):
    (tmp_path / "p.csv").write_text("1,5,3\n4,oops,6\n")
    with pytest.raises(JLInputError, match=r"p\.csv: line 2, column 2: 'oops' is not a number"):
        load_validated(tmp_path / "p.csv")


def test_ragged_csv(tmp_path):
    (tmp_path / "p.csv").write_text("1,2,3\n4,5\n")
    with pytest.raises(JLInputError, match=r"line 2 has 2 columns, expected 3"):
        load_validated(tmp_path / "p.csv")


def test_corrupt_npy(tmp_path):
    (tmp_path / "p.npy").write_bytes(b"not an array")
    with pytest.raises(JLInputError, match=r"p\.npy: could not read as \.npy"):
        load_validated(tmp_path / "p.npy")


@pytest.mark.parametrize("bad,word", [(np.nan, "NaN"), (np.inf, "inf"), (-np.inf, "inf")])
def test_nan_or_inf_names_the_row(tmp_path, bad, word):
    data = np.ones((5, 3))
    data[3, 1] = bad
    np.save(tmp_path / "p.npy", data)
    with pytest.raises(JLInputError, match=rf"p\.npy: row 3 \(0-based\) contains {word}"):
        load_validated(tmp_path / "p.npy")


def test_zero_rows_are_left_out_in_norms_mode_and_refused_when_normalizing_pairs(tmp_path):
    from jl_lightning.io.validation import ZeroRowsWarning, validate_points

    data = np.arange(12.0).reshape(4, 3) + 1
    data[2] = 0
    with pytest.warns(ZeroRowsWarning, match=r"1 zero row\(s\) \(the first: row 2, 0-based\) left out"):
        kept = validate_points(data, "p", normalize=True, mode="norms")
    np.testing.assert_allclose(kept, data[[0, 1, 3]] / np.linalg.norm(data[[0, 1, 3]], axis=1, keepdims=True))
    with pytest.raises(JLInputError, match=r"row 2 \(0-based\) has zero norm.*data.normalize=false"):
        validate_points(data, "p", normalize=True, mode="pairs")
    with pytest.raises(JLInputError, match="all 4 rows are the zero vector"):
        validate_points(np.zeros((4, 3)), "p", mode="norms")


@pytest.mark.parametrize("shape", [(5,), (2, 2, 2)])
def test_wrong_rank(tmp_path, shape):
    np.save(tmp_path / "p.npy", np.ones(shape))
    with pytest.raises(JLInputError, match=r"expected a 2-D array \(n points x d features\)"):
        load_validated(tmp_path / "p.npy")


@pytest.mark.parametrize("shape", [(0, 4), (3, 0)])
def test_empty_array(tmp_path, shape):
    np.save(tmp_path / "p.npy", np.ones(shape))
    with pytest.raises(JLInputError, match=r"the array is empty"):
        load_validated(tmp_path / "p.npy")


def test_empty_csv(tmp_path):
    (tmp_path / "p.csv").write_text("x,y\n")
    with pytest.raises(JLInputError, match=r"the array is empty"):
        load_validated(tmp_path / "p.csv")


@pytest.mark.parametrize("k", [0, -3, 2.5, "ten", True])
def test_bad_k(k):
    with pytest.raises(JLInputError, match=r"model.k must be a positive integer"):
        validate_k(k, 10)


def test_k_larger_than_d():
    with pytest.raises(JLInputError, match=r"model.k=11 exceeds the data dimension d=10"):
        validate_k(11, 10)
    assert validate_k(10, 10) == 10


def test_validate_points_returns_float64():
    out = validate_points(np.ones((2, 3), dtype=np.int32), "inline")
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, 1 / np.sqrt(3))


@pytest.mark.parametrize("option,value", [("n", 0), ("d", -1)])
def test_synthetic_sizes_are_checked(option, value):
    kwargs = {"n": 5, "d": 5, option: value}
    with pytest.raises(JLInputError, match=rf"data.source.{option} must be a positive integer"):
        GaussianPoints(**kwargs).load()


def test_full_batch_loader_serves_one_tensor_for_every_step():
    from jl_lightning.lightning.datamodule import FullBatchLoader

    dm = JLDataModule(GaussianPoints(n=6, d=4))
    dm.setup()
    loader = FullBatchLoader(dm.train_points, 5)
    batches = list(loader)
    assert len(loader) == 5 and len(batches) == 5
    assert all(b is dm.train_points for b in batches)
    # on the CPU, the transfer hook hands back the very same tensor (the span cache relies on it)
    assert dm.transfer_batch_to_device(dm.train_points, torch.device("cpu"), 0) is dm.train_points


def test_non_numeric_csv_column_is_named_from_the_header(tmp_path):
    (tmp_path / "p.csv").write_text("x,y,label\n1,2,3\n4,5,cat\n")
    with pytest.raises(JLInputError, match=r"p\.csv: line 3, column 3 \('label'\): 'cat' is not a number"):
        load_validated(tmp_path / "p.csv")


def test_csv_with_header_checks_row_width_against_it(tmp_path):
    (tmp_path / "p.csv").write_text("x,y,z\n1,2\n")
    with pytest.raises(JLInputError, match=r"line 2 has 2 columns, expected 3 like the header"):
        load_validated(tmp_path / "p.csv")
    (tmp_path / "q.csv").write_text("x,y\n3,4\n0,2\n")
    dm = load_validated(tmp_path / "q.csv", normalize=False)
    np.testing.assert_allclose(dm.points * dm.data_scale, [[3, 4], [0, 2]], rtol=1e-15)


def test_large_npy_is_memory_mapped_and_training_gets_float32(tmp_path):
    X = np.random.default_rng(0).standard_normal((50, 4))
    np.save(tmp_path / "p.npy", X)
    from jl_lightning.io.loading import load_points

    raw = load_points(tmp_path / "p.npy")
    assert isinstance(raw, np.memmap)
    dm = JLDataModule(FilePoints(str(tmp_path / "p.npy")), mode="pairs")
    dm.setup()
    assert dm.points.dtype == np.float64 and dm.train_points.dtype == torch.float32
    np.testing.assert_allclose(dm.points * dm.data_scale, X, rtol=1e-15)


def test_parquet_loads_numeric_columns_and_names_a_text_column(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": [3, 4]}), tmp_path / "p.parquet")
    dm = load_validated(tmp_path / "p.parquet", normalize=False)
    np.testing.assert_allclose(dm.points * dm.data_scale, [[1, 3], [2, 4]], rtol=1e-15)
    pq.write_table(pa.table({"a": [1.0, 2.0], "name": ["u", "v"]}), tmp_path / "q.parquet")
    with pytest.raises(JLInputError, match=r"q\.parquet: column 'name' is not numeric"):
        load_validated(tmp_path / "q.parquet")


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    (tmp_path / "p.parquet").write_bytes(b"PAR1")
    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    with pytest.raises(JLInputError, match=r"p\.parquet: reading \.parquet needs pyarrow"):
        load_validated(tmp_path / "p.parquet")


def test_center_subtracts_the_mean_point_before_normalizing():
    raw = np.array([[1.0, 2.0], [3.0, 6.0], [5.0, 1.0]])
    dm = JLDataModule(ArrayPoints(raw), mode="pairs", center=True)
    dm.setup()
    np.testing.assert_allclose(dm.points * dm.data_scale, raw - raw.mean(0))
    dm = JLDataModule(ArrayPoints(raw), mode="norms", center=True)
    dm.setup()
    centered = raw - raw.mean(0)
    np.testing.assert_allclose(dm.points, centered / np.linalg.norm(centered, axis=1, keepdims=True))


@pytest.mark.parametrize("first", ["0,1,2", "1,2,3"])
def test_csv_header_of_column_indices_auto_true_false(tmp_path, first, caplog):
    """pandas.to_csv(index=False) writes 0,1,2 for unnamed columns: auto takes it as a header
    (and says so), header=false as data, header=true always as a header."""
    import logging

    from jl_lightning.io.loading import load_points

    path = tmp_path / "p.csv"
    path.write_text(f"{first}\n1.5,2,3\n4,5,6\n")
    with caplog.at_level(logging.INFO, logger="jl_lightning"):
        np.testing.assert_array_equal(load_points(path), [[1.5, 2, 3], [4, 5, 6]])
    assert "column indices" in caplog.text
    as_data = [[float(v) for v in first.split(",")], [1.5, 2, 3], [4, 5, 6]]
    np.testing.assert_array_equal(load_points(path, header=False), as_data)
    (tmp_path / "q.csv").write_text("7,8,9\n1,2,3\n")  # not indices: data under auto, header under true
    np.testing.assert_array_equal(load_points(tmp_path / "q.csv"), [[7, 8, 9], [1, 2, 3]])
    np.testing.assert_array_equal(load_points(tmp_path / "q.csv", header=True), [[1, 2, 3]])
    with pytest.raises(JLInputError, match="header option must be auto, true or false"):
        load_points(path, header="maybe")
