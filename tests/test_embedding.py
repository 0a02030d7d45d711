"""JLEmbedding (fit / transform / save / load / from_run, sklearn conventions) and jl-embed streaming."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from jl_lightning import JLEmbedding
from jl_lightning.apps.embed import embed_file
from jl_lightning.apps.embed import main as jl_embed_main
from jl_lightning.errors import JLInputError
from jl_lightning.metrics.distortion import evaluate


def fitted(k=3, d=7, seed=0) -> JLEmbedding:
    """A JLEmbedding loaded from a file in the saved format (a random matrix)."""
    import json
    import tempfile

    meta = {"training_distortion": 0.25, "mode": "pairs", "data_fingerprint": "sha256:abc", "random_state": seed}
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/m.npz"
        np.savez(
            path, components=np.random.default_rng(seed).standard_normal((k, d)), metadata=np.array(json.dumps(meta))
        )
        return JLEmbedding.load(path)


def test_transform_is_x_times_components_transposed():
    emb = fitted()
    X = np.random.default_rng(1).standard_normal((11, 7))
    np.testing.assert_array_equal(emb.transform(X), X @ emb.components_.T)
    np.testing.assert_array_equal(emb.transform(X[:1]), X[:1] @ emb.components_.T)
    with pytest.raises(JLInputError, match=r"expected a 2-D array"):  # scikit-learn's rule: X.reshape(1, -1)
        emb.transform(X[0])
    with pytest.raises(JLInputError, match=r"X has 6 features, but JLEmbedding is expecting 7 .* got shape \(11, 6\)"):
        emb.transform(X[:, :6])
    with pytest.raises(JLInputError, match="not fitted"):
        JLEmbedding().transform(X)


def test_save_load_round_trips_exactly(tmp_path):
    emb = fitted()
    path = emb.save(tmp_path / "emb.npz")
    back = JLEmbedding.load(path)
    assert back.components_.tobytes() == emb.components_.tobytes()
    assert back.components_.dtype == np.float64
    assert back.training_distortion_ == 0.25 and back.mode == "pairs"
    assert back.metadata_["data_fingerprint"] == "sha256:abc"
    # numpy alone reads it
    with np.load(path) as archive:
        assert archive["components"].shape == (3, 7)
        assert json.loads(str(archive["metadata"]))["format"] == "jl_lightning.embedding/1"
    with pytest.raises(FileExistsError):
        emb.save(path)


def test_load_and_from_run_refuse_what_they_cannot_read(tmp_path):
    with pytest.raises(JLInputError, match="not found"):
        JLEmbedding.load(tmp_path / "none.npz")
    np.savez(tmp_path / "other.npz", weights=np.ones(3))
    with pytest.raises(JLInputError, match="no 'components'"):
        JLEmbedding.load(tmp_path / "other.npz")
    with pytest.raises(JLInputError, match="not a finished jl-train run folder"):
        JLEmbedding.from_run(tmp_path)


def test_from_run_reads_a_run_folder(tmp_path):
    matrix = np.random.default_rng(2).standard_normal((4, 9))
    np.save(tmp_path / "embedding.npy", matrix)
    (tmp_path / "summary.json").write_text(
        json.dumps({"best_distortion": 0.1, "mode": "norms", "seed": 3, "data_fingerprint": "sha256:x", "n": 5})
    )
    emb = JLEmbedding.from_run(tmp_path)
    np.testing.assert_array_equal(emb.components_, matrix)
    assert (emb.n_components, emb.n_features_in_, emb.random_state) == (4, 9, 3)
    assert emb.training_distortion_ == 0.1


@pytest.mark.slow
def test_fit_trains_with_jl_train_defaults_and_reports_the_exact_distortion(capsys):
    X = np.random.default_rng(0).standard_normal((30, 50)) * 4
    emb = JLEmbedding(n_components=8, max_steps=800, random_state=1).fit(X)
    # never silent: a progress line every tenth of the fit, on stderr (no logging configured)
    progress = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[jl] step ")]
    assert [line.split(" | ")[0] for line in progress] == [
        f"[jl] step {s}/800 ({s // 8} %)" for s in range(80, 801, 80)
    ]
    assert emb.components_.shape == (8, 50)
    # norms mode: the ratio is per point and scale-free, so the raw X gives the same figure
    eps = evaluate(emb.components_, X, "norms").epsilon
    assert eps == pytest.approx(emb.training_distortion_, rel=1e-9)
    assert eps < 0.05  # Gaussian N(0, 1/8) matrices sit near 1 on these points
    assert emb.metadata_["n_train"] == 30 and emb.metadata_["data_fingerprint"].startswith("sha256:")


def test_sklearn_conventions():
    base = pytest.importorskip("sklearn.base")
    emb = JLEmbedding(n_components=5, mode="pairs", max_steps=10)
    clone = base.clone(emb)
    assert clone.get_params() == emb.get_params()
    assert clone.set_params(n_components=7).n_components == 7
    with pytest.raises(ValueError, match="invalid parameter"):
        emb.set_params(k=3)


@pytest.mark.slow
def test_inside_an_sklearn_pipeline():
    pipeline = pytest.importorskip("sklearn.pipeline")
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    exceptions = pytest.importorskip("sklearn.exceptions")
    X = np.random.default_rng(0).standard_normal((20, 12))
    pipe = pipeline.make_pipeline(preprocessing.StandardScaler(), JLEmbedding(n_components=4, max_steps=50))
    with pytest.warns(exceptions.ConvergenceWarning):  # 50 steps: sigma^2 does not reach 0
        Y = pipe.fit_transform(X)
    assert Y.shape == (20, 4)
    np.testing.assert_allclose(pipe.transform(X), Y)


# --------------------------------------------------------------- jl-embed
@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_jl_embed_streams_a_file_larger_than_its_chunk(tmp_path, suffix):
    X = np.random.default_rng(0).standard_normal((1003, 7)).astype(np.float32)
    A = np.random.default_rng(1).standard_normal((3, 7))
    source = tmp_path / f"in{suffix}"
    if suffix == ".npy":
        np.save(source, X)
    else:
        np.savetxt(source, X, delimiter=",", header=",".join(f"f{i}" for i in range(7)), comments="")
    np.save(tmp_path / "A.npy", A)
    rows = embed_file(A, source, tmp_path / "out.npy", chunk_rows=100, dtype="float64")
    assert rows == 1003
    Y = np.load(tmp_path / "out.npy")
    assert Y.shape == (1003, 3)
    np.testing.assert_allclose(Y, X.astype(np.float64) @ A.T, rtol=1e-12, atol=1e-12)


def test_jl_embed_command_refuses_mismatch_and_overwrite(tmp_path, capsys):
    A = np.ones((2, 5))
    run = tmp_path / "run"
    run.mkdir()
    np.save(run / "embedding.npy", A)
    (run / "summary.json").write_text(json.dumps({"best_distortion": 0.3, "mode": "norms"}))
    np.save(tmp_path / "x6.npy", np.ones((4, 6)))
    assert jl_embed_main([str(run), str(tmp_path / "x6.npy"), str(tmp_path / "y.npy")]) == 2
    err = capsys.readouterr().err
    assert "jl-embed: error:" in err and "dimension 6" in err and "d=5" in err
    assert not (tmp_path / "y.npy").exists()
    np.save(tmp_path / "x5.npy", np.ones((4, 5)))
    assert jl_embed_main([str(run), str(tmp_path / "x5.npy"), str(tmp_path / "y.npy")]) == 0
    before = (tmp_path / "y.npy").read_bytes()
    assert jl_embed_main([str(run), str(tmp_path / "x5.npy"), str(tmp_path / "y.npy")]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (tmp_path / "y.npy").read_bytes() == before
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.full((4, 2), 5.0, dtype=np.float32))


def test_jl_embed_names_a_bad_csv_cell(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n3,oops\n")
    with pytest.raises(JLInputError, match=r"x.csv: line 3, column 2 \('b'\): 'oops' is not a number"):
        embed_file(np.ones((1, 2)), tmp_path / "x.csv", tmp_path / "y.npy")
    assert not (tmp_path / "y.npy").exists() and not list(tmp_path.glob(".y.npy*"))


def test_jl_embed_console_script_runs(tmp_path):
    exe = shutil.which("jl-embed")
    cmd = [exe] if exe else [sys.executable, "-m", "jl_lightning.embed_cli"]
    np.save(tmp_path / "A.npy", np.eye(3)[:2])
    np.save(tmp_path / "x.npy", np.arange(12.0).reshape(4, 3))
    proc = subprocess.run(
        cmd + [str(tmp_path / "A.npy"), str(tmp_path / "x.npy"), str(tmp_path / "y.csv")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    np.testing.assert_allclose(np.loadtxt(tmp_path / "y.csv", delimiter=","), np.arange(12.0).reshape(4, 3)[:, :2])


def test_scikit_learns_estimator_checks_pass_in_full():
    """scikit-learn's own contract, every check: the errors are ValueErrors in its words,
    fit never overwrites a constructor parameter, transform checks n_features_in_."""
    estimator_checks = pytest.importorskip("sklearn.utils.estimator_checks")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = estimator_checks.check_estimator(JLEmbedding(n_components=2, max_steps=30), on_fail=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert len(results) > 40 and failed == []


def test_a_fit_that_did_not_converge_warns_and_says_so():
    sklearn_exceptions = pytest.importorskip("sklearn.exceptions")
    X = np.random.default_rng(0).standard_normal((40, 12))
    with pytest.warns(sklearn_exceptions.ConvergenceWarning, match="did not converge: sigma\\^2 = 0.[0-9]+ after 20"):
        emb = JLEmbedding(n_components=4, mode="pairs", max_steps=20).fit(X)
    assert emb.converged_ is False and emb.sigma2_final_ > 0 and emb.switch_step_ is None
    assert emb.metadata_["converged"] is False and emb.n_components == 4 and emb.mode == "pairs"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", sklearn_exceptions.ConvergenceWarning)  # a converged fit is silent
        done = JLEmbedding(n_components=4, mode="pairs", max_steps=600).fit(X)
    assert done.converged_ and done.sigma2_final_ == 0.0 and 0 < done.switch_step_ < 600


# ------------------------------------------------ scikit-learn's transformer conveniences
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transform_takes_sparse_input_without_densifying_it(fmt, dtype):
    """scipy.sparse rows give what their dense copy gives (dtype kept as for dense input);
    ``dense_output=False`` returns a sparse matrix of the same values, as scikit-learn's
    SparseRandomProjection does."""
    sparse = pytest.importorskip("scipy.sparse")
    emb = fitted(k=3, d=40)
    X = sparse.random(25, 40, density=0.05, format=fmt, random_state=1, dtype=dtype)
    Y = emb.transform(X)
    assert isinstance(Y, np.ndarray) and Y.dtype == dtype and Y.shape == (25, 3)
    np.testing.assert_allclose(Y, X.toarray().astype(np.float64) @ emb.components_.T, rtol=1e-6)
    emb.set_params(dense_output=False)
    kept = emb.transform(X)
    assert sparse.issparse(kept)
    np.testing.assert_allclose(kept.toarray(), Y)
    with pytest.raises(ValueError, match="X has 39 features, but JLEmbedding is expecting 40"):
        emb.transform(sparse.random(2, 39, density=0.5, format=fmt))


def test_inverse_transform_is_the_least_norm_preimage():
    """Against scipy's least-squares solver (the minimum-norm solution of A x = y for each row):
    computed on the fly, or kept as ``inverse_components_`` with
    ``compute_inverse_components=True``; a fitted matrix of full row rank maps the preimage back."""
    linalg = pytest.importorskip("scipy.linalg")
    emb = fitted(k=3, d=7)
    Y = np.random.default_rng(4).standard_normal((5, 3))
    expected = np.stack([linalg.lstsq(emb.components_, y)[0] for y in Y])
    np.testing.assert_allclose(emb.inverse_transform(Y), expected, atol=1e-12)
    np.testing.assert_allclose(emb.transform(emb.inverse_transform(Y)), Y, atol=1e-12)
    assert not hasattr(emb, "inverse_components_")
    kept = JLEmbedding(compute_inverse_components=True)
    kept._set_fitted(emb.components_, {})
    assert kept.inverse_components_.shape == (7, 3)
    np.testing.assert_allclose(kept.inverse_transform(Y), expected, atol=1e-12)
    with pytest.raises(ValueError, match="X has 4 features, but JLEmbedding.inverse_transform is expecting 3"):
        emb.inverse_transform(np.ones((2, 4)))


def test_feature_names_and_pandas_output_follow_scikit_learn():
    """Output names as scikit-learn's ClassNamePrefixFeaturesOutMixin makes them; set_output
    (and scikit-learn's global config) gives a DataFrame that keeps the input's index; a
    ColumnTransformer reads the names."""
    pd = pytest.importorskip("pandas")
    sklearn = pytest.importorskip("sklearn")
    from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin
    from sklearn.compose import ColumnTransformer

    emb = fitted(k=3, d=4)

    class Reference(ClassNamePrefixFeaturesOutMixin, BaseEstimator):
        def fit(self):
            self.components_, self._n_features_out = np.ones((3, 4)), 3
            return self

    Reference.__name__ = "JLEmbedding"
    assert emb.get_feature_names_out().tolist() == Reference().fit().get_feature_names_out().tolist()
    frame = pd.DataFrame(np.arange(8.0).reshape(2, 4), columns=list("abcd"), index=["x", "y"])
    assert isinstance(emb.transform(frame), np.ndarray)
    with sklearn.config_context(transform_output="pandas"):
        out = emb.transform(frame)
    assert list(out.columns) == ["jlembedding0", "jlembedding1", "jlembedding2"] and list(out.index) == ["x", "y"]
    np.testing.assert_allclose(out.to_numpy(), frame.to_numpy() @ emb.components_.T)
    assert isinstance(emb.set_output(transform="pandas").transform(frame), pd.DataFrame)
    assert isinstance(emb.set_output(transform="default").transform(frame), np.ndarray)
    with pytest.raises(ValueError, match="transform must be one of"):
        emb.set_output(transform="polar")
    columns = ColumnTransformer([("jl", emb, list("abcd"))]).fit(frame)
    assert columns.get_feature_names_out().tolist() == ["jl__jlembedding0", "jl__jlembedding1", "jl__jlembedding2"]


@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_a_fit_stops_on_sigterm_or_ctrl_c_with_keyboardinterrupt_and_keeps_its_state(signum):
    """A signal during a fit of a million steps ends it with KeyboardInterrupt to the caller;
    the estimator keeps the matrix it had, and the process's handlers are restored."""
    import os
    import signal
    import threading
    import time

    sig = getattr(signal, signum)
    before = signal.getsignal(sig)
    emb = fitted(k=2, d=6)
    components = emb.components_.copy()

    def send():
        deadline = time.monotonic() + 120
        while signal.getsignal(sig) is before and time.monotonic() < deadline:
            time.sleep(0.05)  # the fit's handler is installed once composing starts
        time.sleep(1.5)  # well inside the training steps
        os.kill(os.getpid(), sig)

    threading.Thread(target=send, daemon=True).start()
    X = np.random.default_rng(0).standard_normal((30, 6))
    with pytest.raises(KeyboardInterrupt, match=f"stopped by {signum}"):
        emb.set_params(n_components=2, max_steps=1_000_000).fit(X)
    np.testing.assert_array_equal(emb.components_, components)
    assert signal.getsignal(sig) is before


def test_n_components_auto_finds_the_smallest_k_that_reaches_eps(monkeypatch):
    """The bisection against a fit whose epsilon falls with k (crossing eps between k = 6 and 7):
    it returns 7, tries the JL-bounded top first, records every k with its epsilon, and the JL
    bound is scikit-learn's; a top that misses eps is kept with a ConvergenceWarning."""
    random_projection = pytest.importorskip("sklearn.random_projection")
    exceptions = pytest.importorskip("sklearn.exceptions")
    from jl_lightning.apps import estimator

    def fake_train(self, X, k):
        epsilon = 2.0 / k if k else 9.0  # 0.2857 at k = 7, 0.3333 at k = 6
        summary = {"best_distortion": epsilon, "mode": "pairs", "data_fingerprint": "x", "n": len(X),
                   "steps": 10, "seed": 0, "converged": True, "sigma2_final": 0.0, "switch_step": 3}  # fmt: skip
        return summary, np.ones((k, X.shape[1]))

    monkeypatch.setattr(estimator.JLEmbedding, "_train", fake_train)
    X = np.random.default_rng(0).standard_normal((50, 20))
    emb = JLEmbedding(n_components="auto", eps=0.3, mode="pairs").fit(X)
    assert emb.n_components_ == 7 and emb.components_.shape == (7, 20) and emb.n_components == "auto"
    assert emb.jl_bound_k_ == int(random_projection.johnson_lindenstrauss_min_dim(50, eps=0.3))
    tried = [step["k"] for step in emb.k_search_]
    assert tried[0] == 20 and tried[-1] in (6, 7) and sorted(set(tried)) == sorted(tried)
    assert all(step["epsilon"] == pytest.approx(2.0 / step["k"]) for step in emb.k_search_)
    with pytest.warns(exceptions.ConvergenceWarning, match="k=20 .min.d, JL bound.. gives epsilon 0.1 > eps"):
        assert JLEmbedding(n_components="auto", eps=0.05).fit(X).n_components_ == 20
    for bad in ({"eps": None}, {"eps": 1.5}, {"eps": "0.3"}):
        with pytest.raises(
            ValueError, match=r"eps must be a number in \(0, 1\), the target epsilon of n_components=auto"
        ):
            JLEmbedding(n_components="auto", **bad).fit(X)
    with pytest.raises(ValueError, match="eps=0.3 applies to n_components='auto'"):
        JLEmbedding(n_components=4, eps=0.3).fit(X)


def test_a_saved_file_with_text_components_or_an_unknown_mode_is_refused_and_bool_input_embeds(tmp_path):
    """JLEmbedding.load and jl-embed refuse components that are not numbers and a mode that is
    neither norms nor pairs, in one line; jl-embed takes bool rows as transform does (0 and 1)."""
    np.savez(tmp_path / "text.npz", components=np.array([["a", "b"]]), metadata=np.array(json.dumps({})))
    np.savez(tmp_path / "mode.npz", components=np.eye(2, 3), metadata=np.array(json.dumps({"mode": "pwn"})))
    with pytest.raises(JLInputError, match="text.npz: an embedding matrix must hold real numbers, got dtype <U1"):
        JLEmbedding.load(tmp_path / "text.npz")
    with pytest.raises(JLInputError, match=r"mode.npz: mode must be one of \['norms', 'pairs'\], got 'pwn'"):
        JLEmbedding.load(tmp_path / "mode.npz")
    flags = np.random.default_rng(0).random((6, 7)) > 0.5
    np.save(tmp_path / "flags.npy", flags)
    emb = fitted(k=3, d=7)
    embed_file(emb.components_, tmp_path / "flags.npy", tmp_path / "out.npy")
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), emb.transform(flags))
