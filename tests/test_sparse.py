"""scipy.sparse rows end to end: loading save_npz files, the data checks, duplicates, PCA, the
subspace penalty's directions, exact evaluation, fit and jl-embed, each against the same rows
densified (brute force, numpy's SVD)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

sp = pytest.importorskip("scipy.sparse")

from jl_lightning.errors import JLInputError  # noqa: E402
from jl_lightning.io.loading import load_points  # noqa: E402
from jl_lightning.io.run_folder import fingerprint  # noqa: E402
from jl_lightning.io.validation import duplicate_rows, validate_points  # noqa: E402
from jl_lightning.metrics.distortion import evaluate  # noqa: E402
from jl_lightning.sparse_rows import SparseRows, dense_rows  # noqa: E402


def tfidf_like(n=60, d=300, density=0.03, seed=0) -> "sp.csr_matrix":
    """Nonnegative sparse rows with a few repeated ones (as duplicate documents are)."""
    X = sp.random(n, d, density=density, format="csr", random_state=seed)
    X = sp.vstack([X, X[:3]]).tocsr()
    X.data = X.data.astype(np.float64)
    return X


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_a_save_npz_file_loads_as_sparse_rows(tmp_path, fmt):
    X = tfidf_like()
    path = tmp_path / "x.npz"
    sp.save_npz(path, X.asformat(fmt))
    rows = load_points(path)
    assert isinstance(rows, SparseRows) and rows.shape == X.shape
    np.testing.assert_array_equal(dense_rows(rows[5:9]), X[5:9].toarray())
    broken = tmp_path / "broken.npz"
    csr = X.tocsr()
    np.savez(broken, data=csr.data, indices=csr.indices, indptr=csr.indptr[::-1], format="csr", shape=csr.shape)
    with pytest.raises(JLInputError, match="broken.npz: could not read as a scipy.sparse matrix"):
        load_points(broken)


def test_sparse_rows_are_checked_and_scaled_as_their_dense_copy_is():
    X = tfidf_like()
    dense = X.toarray()
    pairs = validate_points(X, "x", normalize=False, mode="pairs")
    np.testing.assert_allclose(dense_rows(pairs[0 : len(pairs)]), validate_points(dense, "x", False, "pairs"))
    X_zero = sp.vstack([X, sp.csr_matrix((1, X.shape[1]))]).tocsr()
    with pytest.warns(UserWarning, match="1 zero row"):
        norms = validate_points(X_zero, "x", normalize=True, mode="norms")
    np.testing.assert_allclose(np.linalg.norm(dense_rows(norms[0 : len(norms)]), axis=1), 1.0)
    with pytest.raises(JLInputError, match="data.center=true would make the sparse rows dense"):
        validate_points(X, "x", normalize=False, mode="pairs", center=True)
    with pytest.raises(JLInputError, match="all 4 points are identical"):
        validate_points(sp.csr_matrix(np.tile(dense[:1], (4, 1))), "x", normalize=False, mode="pairs")
    bad = X.copy()
    bad.data[bad.indptr[7]] = np.nan
    with pytest.raises(JLInputError, match="x: row 7 .0-based. contains NaN"):
        validate_points(bad, "x", normalize=False, mode="pairs")


def test_duplicates_and_fingerprints_of_sparse_rows():
    X = tfidf_like()
    rows = validate_points(X, "x", normalize=False, mode="pairs")
    assert duplicate_rows(rows) == duplicate_rows(X.toarray()) == (3, 3)
    assert fingerprint(rows) == fingerprint(validate_points(X.copy(), "x", normalize=False, mode="pairs"))
    other = X.copy()
    other.data[0] *= 2
    assert fingerprint(rows) != fingerprint(validate_points(other, "x", normalize=False, mode="pairs"))


@pytest.mark.parametrize("n, k", [(40, 3), (40, 39), (300, 39)])
def test_sparse_pca_is_the_centered_pca_of_the_dense_rows(n, k):
    """ARPACK on the implicitly centered operator, or the small Gram matrix near min(n, d),
    against numpy's SVD of the densified, centered rows (up to each direction's sign)."""
    from jl_lightning.baselines.registry import pca_matrix

    X = sp.random(n, 40 if n == 300 else 120, density=0.2, format="csr", random_state=1)
    got = pca_matrix(SparseRows(X), k)
    dense = X.toarray()
    _, _, vt = np.linalg.svd(dense - dense.mean(0), full_matrices=False)
    overlap = np.abs(np.sum(got * vt[:k], axis=1))
    np.testing.assert_allclose(overlap[: k - 1], 1.0, atol=1e-6)  # the last may share its value
    np.testing.assert_allclose(got @ got.T, np.eye(k), atol=1e-8)


@pytest.mark.parametrize("n, d", [(30, 80), (80, 30)])
def test_the_subspace_penalty_directions_of_sparse_rows_equal_the_dense_ones(n, d):
    from jl_lightning.core.objective import principal_directions

    X = sp.random(n, d, density=0.3, format="csr", random_state=2, dtype=np.float64)
    U = principal_directions(SparseRows(X), 0.9)
    V = principal_directions(torch.from_numpy(X.toarray()), 0.9)
    assert U.shape == V.shape
    np.testing.assert_allclose((U @ U.T).numpy(), (V @ V.T).numpy(), atol=1e-9)


@pytest.mark.parametrize("mode", ["norms", "pairs"])
def test_exact_evaluation_of_sparse_rows_equals_the_dense_pass(mode):
    X = tfidf_like(n=50)
    A = np.random.default_rng(3).standard_normal((6, X.shape[1])) / np.sqrt(6)
    held = sp.random(9, X.shape[1], density=0.05, format="csr", random_state=4)
    a = evaluate(A, SparseRows(X), mode, heldout=SparseRows(held), worst=5)
    b = evaluate(A, X.toarray(), mode, heldout=held.toarray(), worst=5)
    assert a.epsilon == pytest.approx(b.epsilon, rel=1e-12) and a.count == b.count
    assert a.zero_distance_pairs == b.zero_distance_pairs
    np.testing.assert_array_equal(a.worst[0], b.worst[0])
    for name in b.heldout:
        assert a.heldout[name].epsilon == pytest.approx(b.heldout[name].epsilon, rel=1e-12)


@pytest.mark.slow
def test_a_fit_on_sparse_rows_certifies_the_epsilon_of_its_matrix_on_the_dense_rows(tmp_path):
    """JLEmbedding.fit on CSR rows: the training epsilon it reports is the exact one on the
    densified rows; transform and jl-embed of the save_npz file give X @ components^T."""
    from jl_lightning import JLEmbedding
    from jl_lightning.apps.embed import embed_file
    from jl_lightning.errors import DuplicatePointsWarning

    X = tfidf_like(n=80, d=500)
    with pytest.warns(DuplicatePointsWarning, match="3 duplicate row"):
        emb = JLEmbedding(n_components=8, mode="pairs", max_steps=200).fit(X)
    assert emb.converged_
    exact = evaluate(emb.components_, X.toarray(), "pairs").epsilon
    assert emb.training_distortion_ == pytest.approx(exact, rel=1e-9) and exact < 1.0
    sp.save_npz(tmp_path / "x.npz", X)
    embed_file(emb.components_, tmp_path / "x.npz", tmp_path / "y.npy", chunk_rows=16)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), X @ emb.components_.T, rtol=1e-6)


def test_neighbours_and_recall_of_sparse_rows_equal_the_dense_ones():
    """The exact nearest neighbours of sparse rows (sparse Gram tiles) and after a map (sparse
    image products) are the dense rows' (ties broken alike), and so is recall@K."""
    from jl_lightning.metrics.neighbors import original_neighbors, recall_at_k

    X = tfidf_like(n=70, d=200, density=0.1)
    A = np.random.default_rng(5).standard_normal((8, 200))
    np.testing.assert_array_equal(
        original_neighbors(SparseRows(X), K=5, queries=20, seed=1),
        original_neighbors(X.toarray(), K=5, queries=20, seed=1),
    )
    assert recall_at_k(A, SparseRows(X), K=5, queries=20, seed=1) == recall_at_k(
        A, X.toarray(), K=5, queries=20, seed=1
    )


def test_a_sparse_pass_hands_over_its_candidates_with_their_exact_squared_distances():
    """The candidates of an unscreened pass carry the squared distances their tiles computed
    (no second pass over the rows): the exact worst pairs, and their distances, against
    dense brute force."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 30)) * (rng.random((60, 30)) < 0.3)
    X[:, 0] += 0.1  # no empty row
    A = rng.standard_normal((4, 30)) / 2
    report = evaluate(A, SparseRows(sp.csr_matrix(X)), "pairs", candidates=25, quantiles=False)
    i, j, dev, sq = report.candidates
    iu, ju = np.triu_indices(60, 1)
    D = X[iu] - X[ju]
    brute = np.abs(((D @ A.T) ** 2).sum(1) / (D**2).sum(1) - 1)
    top = np.argsort(-brute)[:25]
    assert list(zip(i.tolist(), j.tolist())) == list(zip(iu[top].tolist(), ju[top].tolist()))
    np.testing.assert_allclose(dev, brute[top], rtol=1e-9)
    np.testing.assert_allclose(sq, (D[top] ** 2).sum(1), rtol=1e-9)
