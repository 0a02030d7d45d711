"""Pairs mode: the training loss against brute-force difference vectors, both strategies,
the smooth max, the held-out split, and the pairs-mode data checks."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch

from jl_lightning.core.losses import HardMax, annealed_temperature, smooth_max
from jl_lightning.core.sampling import draw_noise, embed
from jl_lightning.errors import DuplicatePointsWarning, JLInputError
from jl_lightning.io.sources import ArrayPoints, GaussianPoints
from jl_lightning.lightning.datamodule import JLDataModule
from jl_lightning.metrics import evaluate
from tests.helpers import sampler


def make(k, d, **kw):
    kw.setdefault("optimizer", partial(torch.optim.Adam, lr=0.01))
    return sampler(k=k, dim=d, mode="pairs", **kw)


def brute_pair_devs(A: np.ndarray, X: np.ndarray) -> np.ndarray:
    """|‖A(x_i - x_j)‖² / ‖x_i - x_j‖² - 1| over i < j, from explicit difference vectors."""
    out = []
    for i in range(len(X)):
        for j in range(i + 1, len(X)):
            diff = X[i] - X[j]
            dx = diff @ diff
            if dx > 0:
                out.append(abs(np.sum((A @ diff) ** 2) / dx - 1))
    return np.array(out)


def data(n=12, d=9, seed=0, scale=3.0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen) * scale + 1.0  # not centered, not unit norm


@pytest.mark.parametrize("sampling", ["full", "span"])
def test_exact_pair_loss_equals_brute_force_difference_vectors(sampling):
    k, d, N = 4, 9, 5
    x = data(n=8, d=d) if sampling == "span" else data(n=12, d=d)
    model = make(
        k,
        d,
        n_samples=N,
        init_mean="gaussian",
        init_seed=3,
        init_variance=0.3,
        sampling=sampling,
        pair_strategy="exact",
    )
    model.prepare(x)
    loss, sigma = model.loss_fn, model.variance.sigma()
    torch.manual_seed(7)
    term, hard = loss(model.mean, sigma, N, 0, 0)
    assert torch.equal(term.detach(), hard)
    # the same samples, rebuilt: with the same seed the loss draws the same noise
    torch.manual_seed(7)
    width = loss.points.shape[1] if loss.factor is None else loss.factor.shape[0]
    noise = draw_noise(N, k, width, model.mean)
    embedded = embed(model.mean, sigma, noise, loss.points, loss.factor).detach().double()  # A_s (X - mean)^T
    X = x.double().numpy()
    for s in range(N):
        # brute force on the embedded points: Y_s has the same pair differences as A_s x
        Y = embedded[s].T.numpy()
        devs = []
        for i in range(len(X)):
            for j in range(i + 1, len(X)):
                dx = np.sum((X[i] - X[j]) ** 2)
                devs.append(abs(np.sum((Y[i] - Y[j]) ** 2) / dx - 1))
        assert float(hard[s]) == pytest.approx(max(devs), rel=1e-4)


def test_deterministic_pair_loss_is_the_exact_pair_distortion():
    """sigma^2 = 0: the loss is the exact all-pairs epsilon of M / sqrt(k), in both strategies,
    and matches the brute-force difference-vector loss."""
    k, d = 3, 7
    x = data(n=15, d=d)
    A = (torch.randn(k, d, generator=torch.Generator().manual_seed(1)) / math.sqrt(k)).double().numpy()
    expected = brute_pair_devs(A, x.double().numpy()).max()
    for strategy in ("exact", "active"):
        model = make(k, d, init_variance=0.0, pair_strategy=strategy, active_hard=200, active_random=10)
        model.variance.freeze_at_zero()
        with torch.no_grad():
            model.mean.copy_(torch.from_numpy(A * math.sqrt(k)))
        if strategy == "active":
            model.refresh_active_pairs(x)
        loss, sampled, _ = model.objective(x)
        assert float(loss.detach()) == pytest.approx(expected, rel=1e-4)
        assert float(sampled) == pytest.approx(expected, rel=1e-4)


def test_exact_pair_gradient_equals_autograd_through_the_brute_force_max():
    k, d, N = 3, 6, 4
    x = data(n=10, d=d)
    model = make(
        k, d, n_samples=N, init_mean="gaussian", init_seed=2, init_variance=0.2, sampling="full", pair_strategy="exact"
    )
    torch.manual_seed(11)
    loss, _, _ = model.objective(x)
    loss.backward()
    grad_module = model.mean.grad.clone()
    # reference: every difference vector formed explicitly, max through autograd
    M = model.mean.detach().clone().requires_grad_(True)
    torch.manual_seed(11)
    noise = torch.randn(N, k, d)
    sigma = math.sqrt(0.2)
    iu = torch.triu_indices(len(x), len(x), 1)
    diffs = x[iu[0]] - x[iu[1]]
    A = (M + sigma * noise) / math.sqrt(k)
    ratios = (diffs @ A.transpose(1, 2)).pow(2).sum(-1) / diffs.pow(2).sum(1)
    ref = (ratios - 1).abs().amax(1).mean() + 0.2 / 2
    ref.backward()
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-4)
    torch.testing.assert_close(grad_module, M.grad, rtol=1e-3, atol=1e-5)


def test_active_set_draws_random_pairs_of_distinct_points_and_keeps_the_hard_pairs():
    x = data(n=30, d=5)
    model = make(2, 5, pair_strategy="active", active_hard=7, active_random=500, init_mean="gaussian")
    model.refresh_active_pairs(x)
    A, X = model.embedding.double().numpy(), (x - x.mean(0)).double().numpy()
    devs = {
        (i, j): abs(np.sum((A @ (X[i] - X[j])) ** 2) / np.sum((X[i] - X[j]) ** 2) - 1)
        for i in range(30)
        for j in range(i + 1, 30)
    }
    hard = sorted(devs, key=devs.get, reverse=True)[:7]  # brute-force worst pairs
    active = model.loss_fn.active
    assert list(zip(active.hard_i.tolist(), active.hard_j.tolist())) == hard
    di, dj = active.draw_random(torch.device("cpu"))
    assert len(di) == 500 and bool((di != dj).all())
    assert int(min(di.min(), dj.min())) >= 0 and int(max(di.max(), dj.max())) < 30
    # the hard pairs' inverse squared distances, looked up once per pass in the table of every
    # pair's (few points); no difference vectors (30 points' images are fewer products)
    i, j, inv, valid, differences = model.loss_fn.hard
    assert differences is None and model.loss_fn.geometry is not None
    assert list(zip(i.tolist(), j.tolist())) == hard and bool((valid == 1).all())
    rows = X[[i for i, _ in hard]] - X[[j for _, j in hard]]
    np.testing.assert_allclose(inv.double().numpy(), 1 / (rows**2).sum(1), rtol=1e-5)


def test_active_memory_keeps_earlier_hard_pairs_most_recent_first_each_once():
    from jl_lightning.core.pairs import ActivePairs

    active = ActivePairs(n=10, n_hard=3, n_random=4, memory=2)
    active.set_hard([0, 1, 2], [5, 6, 7])
    active.set_hard([3, 1, 8], [4, 6, 9])  # (1, 6) again
    assert list(zip(active.hard_i.tolist(), active.hard_j.tolist())) == [(3, 4), (1, 6), (8, 9), (0, 5), (2, 7)]
    plain = ActivePairs(n=10, n_hard=3, n_random=4)
    plain.set_hard([0, 1, 2], [5, 6, 7])
    plain.set_hard([3, 1, 8], [4, 6, 9])
    assert list(zip(plain.hard_i.tolist(), plain.hard_j.tolist())) == [(3, 4), (1, 6), (8, 9)]


def test_worst_pairs_are_the_brute_force_top_pairs():
    X = data(n=25, d=6).double().numpy()
    A = np.random.default_rng(0).standard_normal((3, 6)) / math.sqrt(3)
    devs = {}
    for a in range(25):
        for b in range(a + 1, 25):
            diff = X[a] - X[b]
            devs[(a, b)] = abs(np.sum((A @ diff) ** 2) / (diff @ diff) - 1)
    top = sorted(devs, key=devs.get, reverse=True)[:10]
    for budget in (2**30, 3000):  # one block, and many small blocks
        i, j, dev = evaluate(A, X, "pairs", worst=10, memory_budget=budget).worst
        assert list(zip(i.tolist(), j.tolist())) == top
        np.testing.assert_allclose(dev, [devs[p] for p in top], rtol=1e-10)


def test_cross_pair_distortion_equals_brute_force():
    X = data(n=14, d=5, seed=1).double().numpy()
    Z = data(n=9, d=5, seed=2).double().numpy()
    A = np.random.default_rng(1).standard_normal((2, 5))
    ratios = [np.sum((A @ (a - b)) ** 2) / np.sum((a - b) ** 2) for a in X for b in Z]
    for budget in (2**30, 2000):
        report = evaluate(A, X, "pairs", other=Z, memory_budget=budget)
        assert report.count == 14 * 9
        assert report.epsilon == pytest.approx(max(abs(r - 1) for r in ratios), rel=1e-12)
        assert report.min_ratio == pytest.approx(min(ratios), rel=1e-12)
        i, j = report.worst_index
        assert abs(np.sum((A @ (X[i] - Z[j])) ** 2) / np.sum((X[i] - Z[j]) ** 2) - 1) == pytest.approx(
            report.epsilon, rel=1e-12
        )


def test_heldout_reports_cover_points_pairs_and_cross_pairs():
    X = data(n=10, d=4).double().numpy()
    Z = data(n=5, d=4, seed=3).double().numpy()
    A = np.eye(4)[:2]
    reports = evaluate(A, X, "pairs", heldout=Z).heldout
    assert set(reports) == {"points", "pairs", "cross_pairs"}
    assert reports["points"].count == 5 and reports["pairs"].count == 10 and reports["cross_pairs"].count == 50


def test_smooth_max_bounds_and_annealing():
    dev = torch.tensor([[0.1, 0.5, 0.49, 0.0]])
    for t in (1.0, 0.1, 0.01):
        value = float(smooth_max(dev, t))
        assert 0.5 <= value <= 0.5 + t * math.log(4) + 1e-7
    assert annealed_temperature(0.1, 1e-4, 0, 100) == pytest.approx(0.1)
    assert annealed_temperature(0.1, 1e-4, 50, 100) == pytest.approx(math.sqrt(0.1 * 1e-4))
    assert annealed_temperature(0.1, 1e-4, 100, 100) == pytest.approx(1e-4)


def test_smooth_exact_pairs_and_bad_pair_options_are_refused():
    with pytest.raises(JLInputError, match="pair_strategy=active"):
        make(2, 4, pair_strategy="exact", smooth_temperature=0.1)
    with pytest.raises(JLInputError, match="model.loss.pair_strategy"):
        make(2, 4, pair_strategy="sampled")
    with pytest.raises(JLInputError, match="model.mode"):
        sampler(k=2, dim=4, mode="distances")
    with pytest.raises(JLInputError, match="smooth_temperature"):
        make(2, 4, pair_strategy="active", smooth_temperature=-1.0)


# ------------------------------------------------------------------ data
def test_heldout_split_is_seeded_disjoint_and_training_never_sees_it():
    raw = np.random.default_rng(0).standard_normal((50, 6))
    dm = JLDataModule(ArrayPoints(raw), mode="pairs", val_fraction=0.2, split_seed=4)
    dm.setup()
    assert len(dm.val_index) == 10 and len(dm.train_index) == 40
    assert not set(dm.train_index) & set(dm.val_index)
    assert sorted(set(dm.train_index) | set(dm.val_index)) == list(range(50))
    # pairs mode: not normalized, only divided by the data scale (the largest entry)
    np.testing.assert_allclose(dm.points * dm.data_scale, raw[dm.train_index], rtol=1e-15)
    np.testing.assert_allclose(dm.val_points * dm.data_scale, raw[dm.val_index], rtol=1e-15)
    served = next(iter(dm.train_dataloader()))
    assert served.shape == (40, 6)
    np.testing.assert_allclose(served.numpy() * dm.data_scale, raw[dm.train_index], rtol=1e-6)
    again = JLDataModule(ArrayPoints(raw), mode="pairs", val_fraction=0.2, split_seed=4)
    again.setup()
    np.testing.assert_array_equal(again.val_index, dm.val_index)
    other = JLDataModule(ArrayPoints(raw), mode="pairs", val_fraction=0.2, split_seed=5)
    other.setup()
    assert not np.array_equal(other.val_index, dm.val_index)


def test_auto_normalization_follows_the_mode():
    raw = np.random.default_rng(1).standard_normal((6, 3)) * 5
    norms = JLDataModule(ArrayPoints(raw), mode="norms")
    norms.setup()
    np.testing.assert_allclose(np.linalg.norm(norms.points, axis=1), 1.0)
    pairs = JLDataModule(ArrayPoints(raw), mode="pairs")
    pairs.setup()
    np.testing.assert_allclose(pairs.points * pairs.data_scale, raw, rtol=1e-15)


def test_duplicate_rows_warn_with_their_count_in_pairs_mode():
    raw = np.array([[1.0, 2.0], [3.0, 4.0], [1.0, 2.0], [1.0, 2.0], [0.0, 0.0]])
    dm = JLDataModule(ArrayPoints(raw, "dups.npy"), mode="pairs")
    with pytest.warns(DuplicatePointsWarning, match=r"dups.npy: 2 duplicate row\(s\), 3 pair\(s\)"):
        dm.setup()
    assert dm.duplicates == {"rows": 2, "pairs": 3}
    # a zero row is a fine point in pairs mode (only its pairs count)
    assert dm.points.shape == (5, 2)
    report = evaluate(np.eye(2), dm.points, "pairs")
    assert report.zero_distance_pairs == 3 and report.count == 10 - 3


@pytest.mark.parametrize("n", [1])
def test_pairs_mode_needs_two_points(n):
    dm = JLDataModule(ArrayPoints(np.ones((n, 3)), "one.csv"), mode="pairs")
    with pytest.raises(JLInputError, match="one.csv: pairs mode needs at least 2 points"):
        dm.setup()


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, "half"])
def test_bad_val_fraction(fraction):
    dm = JLDataModule(GaussianPoints(n=10, d=3), val_fraction=fraction)
    with pytest.raises(JLInputError, match="data.val_fraction"):
        dm.setup()


def test_val_fraction_that_leaves_too_few_training_points():
    dm = JLDataModule(GaussianPoints(n=3, d=3), mode="pairs", val_fraction=0.9)
    with pytest.raises(JLInputError, match="leaves 0 training point"):
        dm.setup()


def test_bad_normalize_and_mode_options():
    with pytest.raises(JLInputError, match="data.normalize"):
        JLDataModule(GaussianPoints(n=3, d=3), normalize="yes")
    with pytest.raises(JLInputError, match="data.mode"):
        JLDataModule(GaussianPoints(n=3, d=3), mode="both")


def test_auto_smooth_temperature_is_smooth_only_for_active_pairs():
    assert isinstance(sampler(k=2, dim=4, smooth_temperature="auto").loss_fn.maximum, HardMax)
    assert make(2, 4, pair_strategy="active", smooth_temperature="auto").loss_fn.maximum.start == 0.1
    assert isinstance(make(2, 4, pair_strategy="exact", smooth_temperature="auto").loss_fn.maximum, HardMax)
    with pytest.raises(JLInputError, match="smooth_temperature"):
        make(2, 4, pair_strategy="active", smooth_temperature="warm")


def test_a_rescan_makes_the_worst_candidates_under_the_current_mean_the_hard_pairs():
    """Brute force: after an exact pass hands over its candidates, a rescan with another
    M picks the n_hard worst of those candidates under that M, and only at rescan steps."""
    x = data(n=40, d=6)
    model = make(
        3,
        6,
        pair_strategy="active",
        active_hard=5,
        active_random=50,
        init_mean="gaussian",
        active_candidates=60,
        active_rescan=4,
        active_refresh=100,
    )
    model.refresh_active_pairs(x)
    X = (x - x.mean(0)).double().numpy()

    def devs(M):
        A = M.double().numpy() / math.sqrt(3)
        return {
            (a, b): abs(np.sum((A @ (X[a] - X[b])) ** 2) / np.sum((X[a] - X[b]) ** 2) - 1)
            for a in range(40)
            for b in range(a + 1, 40)
        }

    before = devs(model.mean.detach())
    loss = model.loss_fn
    candidates = list(zip(loss.candidates[0].tolist(), loss.candidates[1].tolist()))
    assert sorted(candidates, key=before.get, reverse=True) == sorted(before, key=before.get, reverse=True)[:60]
    with torch.no_grad():
        model.mean.add_(torch.randn(3, 6, generator=torch.Generator().manual_seed(5)))
    after = devs(model.mean.detach())
    loss.rescan(model.mean)
    hard = list(zip(loss.active.hard_i.tolist(), loss.active.hard_j.tolist()))
    assert hard == sorted(candidates, key=after.get, reverse=True)[:5]
    assert hard != sorted(candidates, key=before.get, reverse=True)[:5]  # the rescan changed them
    # the hard pairs' distances are tabulated again for the steps until the next rescan
    rows = X[[a for a, _ in hard]] - X[[b for _, b in hard]]
    np.testing.assert_allclose(loss.hard[2].double().numpy(), 1 / (rows**2).sum(1), rtol=1e-5)
    assert [s for s in range(13) if loss.needs_rescan(s)] == [0, 4, 8, 12]
    # candidates handed over without their distances get them from the points
    i, j, sq_distances, _ = loss.candidates
    np.testing.assert_allclose(sq_distances.double().numpy(), ((X[i.numpy()] - X[j.numpy()]) ** 2).sum(1), rtol=1e-5)


@pytest.mark.parametrize("count", [7, 600])  # few pairs: gathered rows; many: read off Gram blocks
@pytest.mark.parametrize("budget", [2**10, 2**20])
def test_pair_sq_distances_equal_brute_force_differences_in_either_path(count, budget):
    """core.pairs.pair_sq_distances against explicit differences, for a torch and a numpy
    source, within a budget smaller than one row pair's Gram block and a larger one, and
    for pairs between two sets of rows."""
    from jl_lightning.core.pairs import GRAM_PAIRS_RATIO, pair_sq_distances

    rng = np.random.default_rng(2)
    left, right = rng.standard_normal((40, 30)) + 3.0, rng.standard_normal((25, 30))
    i, j = rng.integers(0, 40, count), rng.integers(0, 25, count)
    assert (count * GRAM_PAIRS_RATIO >= 40 * 25) == (count == 600)
    expected = ((left[i] - right[j]) ** 2).sum(1)
    import scipy.sparse

    from jl_lightning.sparse_rows import SparseRows

    for source in (left, torch.from_numpy(left), SparseRows(scipy.sparse.csr_matrix(left))):
        got = pair_sq_distances(source, i, j, right, memory_budget=budget).numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-11)
    same = pair_sq_distances(left, i, i[::-1].copy(), memory_budget=budget).numpy()
    np.testing.assert_allclose(same, ((left[i] - left[i[::-1]]) ** 2).sum(1), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n", [12, 400])  # few points: their images are subtracted; many: difference vectors
def test_the_active_loss_is_the_same_in_budget_sized_chunks_and_on_sparse_rows(monkeypatch, n):
    """The active loss and its gradients (M and sigma) with the difference vectors held whole,
    and fetched in chunks of a few rows (a budget of 3 kB), from the same random draws; on
    the same points as scipy.sparse rows (uncentered: differences do not change) the same
    deterministic loss; every value against brute-force difference vectors, with the noise
    as each path draws it (sparse rows draw E column by column, the same law)."""
    sparse = pytest.importorskip("scipy.sparse")
    import jl_lightning.core.losses as losses
    from jl_lightning.sparse_rows import SparseRows
    from tests.helpers import default_loss

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 9)) * (rng.random((n, 9)) < 0.5)
    M0 = torch.from_numpy(rng.standard_normal((3, 9))).float()

    def run(points, budget, sigma=0.7):
        monkeypatch.setattr(losses, "DEFAULT_MEMORY_BUDGET", budget)
        loss = default_loss(mode="pairs", active_hard=6, active_random=40, smooth_temperature=None)
        loss.prepare(points)
        loss.set_hard(torch.tensor([0, 1, 2, 3, 4, 5]), torch.tensor([6, 7, 8, 9, 10, 11]))
        M = M0.clone().requires_grad_()
        s = None if sigma is None else torch.tensor(sigma, requires_grad=True)
        torch.manual_seed(3)
        term, _ = loss(M, s, 4, 0, 10)
        term.sum().backward()
        return loss.dense, term.detach(), M.grad, None if s is None else s.grad

    def brute(columns_first, sigma=0.7):
        torch.manual_seed(3)
        i = torch.randint(0, n, (40,))
        j = (i + torch.randint(1, n, (40,))) % n
        noise = torch.randn(9, 4, 3).permute(1, 2, 0) if columns_first else torch.randn(4, 3, 9)
        i = np.concatenate([np.arange(6), i.numpy()])
        j = np.concatenate([np.arange(6, 12), j.numpy()])
        D = x[i] - x[j]
        A = (M0.double() + sigma * noise.double()) / 3**0.5
        ratio = (np.einsum("skd,pd->spk", A.numpy(), D) ** 2).sum(-1) / (D**2).sum(1)
        return np.abs(ratio[:, (D**2).sum(1) > 0] - 1).max(1)

    dense_x = torch.from_numpy(x).float()
    sparse_x = SparseRows(sparse.csr_matrix(x.astype(np.float32)))
    whole, chunked = run(dense_x, 2**28), run(dense_x, 3000)
    rows = run(sparse_x, 3000)
    # difference vectors held only where there are more points than active pairs (6 + 40)
    assert whole[0] == (n > 46) and not chunked[0] and not rows[0]
    for a, b in zip(whole[1:], chunked[1:]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(run(dense_x, 2**28, None)[1:3], run(sparse_x, 3000, None)[1:3]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(whole[1].double().numpy(), brute(False), rtol=1e-4)
    np.testing.assert_allclose(rows[1].double().numpy(), brute(True), rtol=1e-4)


def test_a_refresh_takes_its_hard_pairs_from_the_candidates_head_and_certifies_epsilon_exactly():
    """Above 2^24 pairs the pass screens in float32: epsilon is still the float64 max (checked
    by brute force), and the hard pairs, the head of the float32-ranked candidates, are the
    worst pairs up to float32 rounding."""
    from jl_lightning.lightning.sampler import refresh_pass
    from tests.helpers import default_loss

    rng = np.random.default_rng(0)
    n, d, k = 6000, 12, 4  # 1.8e7 pairs: a screened pass
    X = rng.standard_normal((n, d)).astype(np.float32)
    loss = default_loss(mode="pairs", active_hard=50, active_candidates=200, active_random=10)
    loss.prepare(torch.from_numpy(X))
    A = (rng.standard_normal((k, d)) / np.sqrt(k)).astype(np.float32).astype(np.float64)  # as the pass gets it
    report, (i, j) = refresh_pass(torch.from_numpy(A).float(), loss)
    C = loss.points.double().numpy()  # the points as the loss holds them (centered in float32)
    Y, norms = C @ A.T, (C**2).sum(1)
    found = []  # the 60 largest Gram-formula deviations of each block of rows, with their pairs
    for start in range(0, n - 1, 500):  # every pair i < j, a block of rows at a time
        rows = np.arange(start, min(start + 500, n - 1))
        dx = norms[rows, None] + norms[None, :] - 2 * C[rows] @ C.T
        dy = ((Y[rows, None, :] - Y[None, :, :]) ** 2).sum(-1)
        dev = np.abs(dy / np.where(dx > 0, dx, 1) - 1)
        dev[np.arange(n)[None, :] <= rows[:, None]] = -1
        flat = np.argpartition(dev.ravel(), -60)[-60:]
        found += [(rows[f // n], f % n) for f in flat]
    bi, bj = np.array(found).T

    def exact(a, b):  # by explicit difference vectors, as the pass rechecks in float64
        return np.abs(((Y[a] - Y[b]) ** 2).sum(1) / ((C[a] - C[b]) ** 2).sum(1) - 1)

    top = np.sort(exact(bi, bj))[::-1][:50]
    assert report.epsilon == pytest.approx(top[0], rel=1e-12)
    mine = exact(i, j)
    assert len(i) == 50 and len(set(zip(i.tolist(), j.tolist()))) == 50
    assert mine.min() >= top[-1] * (1 - 1e-4)
