"""The pieces that make n = 10^5 points affordable, against independent references:
the screened all-pairs pass (brute force), its streaming top-K (a full sort), the clustered
data (its defining structure), the refresh schedule, the references' time budget, and the
memory of an exact pass (the process's peak RSS)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jl_lightning.baselines.references import reference_figures
from jl_lightning.core.losses import is_refresh_step
from jl_lightning.errors import JLInputError
from jl_lightning.io.sources import ClustersPoints
from jl_lightning.metrics import evaluate
from tests.helpers import default_loss, pair_ratios

SMALL_TILES = 64 * 64 * 4 * 5  # bytes: the screened pass's smallest tile, 64 rows


def all_pairs(A, X, other=None):
    """Every pair's |ratio - 1|, i, j, ratio and the number of zero-distance pairs (helpers.pair_ratios)."""
    ratio, i, j, zeros = pair_ratios(A, X, other, zero_rtol=1e-12)
    return np.abs(ratio - 1), i, j, ratio, zeros


def clustered_with_ties(n=300, d=12, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) * rng.uniform(0.2, 2.0, (n, 1))
    X[7] = X[200]  # a duplicate pair, in different tiles
    X[40] = X[41] = X[299]  # three copies: three pairs at distance 0
    X[150] = X[3] + 1.0  # the pair (3, 150) has the same difference as (60, 250): a tie
    X[250] = X[60] + 1.0
    return X


# worst=3000: kept values far outnumber a tile's candidates, so they wait in the buffer
@pytest.mark.parametrize("worst, recheck_pairs", [(0, None), (1, None), (40, None), (40, 150), (3000, None)])
def test_screened_pairs_equal_brute_force_with_ties_duplicates_and_tile_straddling_pairs(
    worst, recheck_pairs, monkeypatch
):
    if recheck_pairs:  # the dense float64 recheck in blocks of 2 rows (the GPU's large tiles' way)
        monkeypatch.setattr("jl_lightning.metrics.pair_screen.RECHECK_DENSE_PAIRS", recheck_pairs)
    X = clustered_with_ties()
    rng = np.random.default_rng(1)
    maps = [rng.standard_normal((4, 12)) / 2, rng.standard_normal((3, 12)) / np.sqrt(3)]
    # plant the worst pair across tiles 0 and 4 (64-row tiles): x_290 - x_10 along A_0's top
    # right singular vector, the direction no pair can beat
    _, s, vt = np.linalg.svd(maps[0])
    X[290] = X[10] + 3.0 * vt[0]
    reports = evaluate(maps, X, "pairs", screen=True, worst=worst, memory_budget=SMALL_TILES)
    for A, report in zip(maps, reports):
        dev, i, j, ratio, zeros = all_pairs(A, X)
        assert report.epsilon == pytest.approx(dev.max(), rel=1e-12)
        assert dev[(i == report.worst_index[0]) & (j == report.worst_index[1])][0] == pytest.approx(dev.max())
        assert report.min_ratio == pytest.approx(ratio.min(), rel=1e-12)
        assert report.max_ratio == pytest.approx(ratio.max(), rel=1e-12)
        assert (report.count, report.zero_distance_pairs) == (len(dev), zeros) == (len(dev), 4)
        if worst:  # the streaming top-K is the head of a full sort
            wi, wj, values = report.worst
            np.testing.assert_allclose(values, np.sort(dev)[::-1][:worst], rtol=1e-12)
            lookup = {(a, b): v for a, b, v in zip(i, j, dev)}
            np.testing.assert_allclose([lookup[(a, b)] for a, b in zip(wi, wj)], values, rtol=1e-12)
    assert reports[0].worst_index == (10, 290)
    assert reports[0].epsilon == pytest.approx(s[0] ** 2 - 1, rel=1e-12)


def test_screened_cross_pairs_equal_brute_force():
    rng = np.random.default_rng(2)
    X, other = rng.standard_normal((150, 9)), rng.standard_normal((70, 9))
    other[5] = X[100]  # one pair at distance 0
    A = rng.standard_normal((3, 9)) / np.sqrt(3)
    report = evaluate(A, X, "pairs", other=other, screen=True, worst=5, memory_budget=SMALL_TILES)
    dev, i, j, ratio, zeros = all_pairs(A, X, other)
    assert report.epsilon == pytest.approx(dev.max(), rel=1e-12)
    assert report.count == len(dev) and report.zero_distance_pairs == zeros == 1
    np.testing.assert_allclose(report.worst[2], np.sort(dev)[::-1][:5], rtol=1e-12)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10**6), log_scale=st.floats(-6, 6), n=st.integers(2, 140))
def test_screened_pass_agrees_with_the_float64_pass(seed, log_scale, n):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 6)) * 10.0**log_scale + rng.standard_normal(6) * 10.0 ** (log_scale + 1)
    A = rng.standard_normal((2, 6))
    fast = evaluate(A, X, "pairs", screen=True, worst=3, memory_budget=SMALL_TILES)
    slow = evaluate(A, X, "pairs", screen=False, worst=3, quantiles=False)
    assert fast.epsilon == pytest.approx(slow.epsilon, rel=1e-9)
    assert (fast.min_ratio, fast.max_ratio) == pytest.approx((slow.min_ratio, slow.max_ratio), rel=1e-9)
    np.testing.assert_allclose(fast.worst[2], slow.worst[2], rtol=1e-9)


def test_screened_pass_refuses_nan():
    X = np.random.default_rng(0).standard_normal((100, 5))
    A = np.ones((2, 5))
    A[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        evaluate(A, X, "pairs", screen=True)


def test_clusters_have_their_structure_and_are_reproducible(tmp_path):
    source = ClustersPoints(
        n=3000,
        d=40,
        clusters=5,
        intrinsic_dim=3,
        spread=0.5,
        noise=0.0,
        unit_norm=False,
        seed=3,
        cache_dir=str(tmp_path),
    )
    X = source.load()
    assert isinstance(X, np.memmap) and X.dtype == np.float32 and X.shape == (3000, 40)
    again = ClustersPoints(**{**source.__dict__, "cache_dir": None}).load()
    np.testing.assert_array_equal(X, again)  # memory-mapped or in memory: the same points
    assert len(list(tmp_path.glob("*.npy"))) == 1
    # without noise, the points lie on 5 affine 3-dimensional subspaces: 20 singular values
    # (5 centers + 5 x 3 directions) are all the data needs, the 21st is rounding
    s = np.linalg.svd(np.asarray(X, dtype=np.float64), compute_uv=False)
    assert s[19] > 1e-3 * s[0] and s[20] < 1e-5 * s[0]
    unit = ClustersPoints(n=50, d=40, seed=3).load()
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    "option, value", [("n", 0), ("intrinsic_dim", 50), ("spread", -1.0), ("noise", -0.1), ("clusters", 2.5)]
)
def test_clusters_refuse_bad_options(option, value):
    with pytest.raises(JLInputError, match=f"data.source.{option}"):
        ClustersPoints(**{"n": 10, "d": 40, option: value}).load()


def test_refresh_schedule_grows_geometrically():
    expected, at, gap = [0], 0, 100.0
    while at + round(gap) <= 3000:
        at += round(gap)
        expected.append(at)
        gap *= 1.5
    assert [s for s in range(3001) if is_refresh_step(s, 100, 1.5)] == expected == [0, 100, 250, 475, 813, 1319, 2078]
    assert [s for s in range(201) if is_refresh_step(s, 50, 1.0)] == [0, 50, 100, 150, 200]


def test_extra_refresh_steps_join_the_schedule_in_a_real_fit(cfg_factory, monkeypatch):
    """``model.loss.active_refresh_extra`` adds exact passes to the growth schedule; the fit runs
    one at exactly those steps, and a value that is not a list of steps is refused."""
    from jl_lightning.lightning.fit import fit_from_config
    from jl_lightning.lightning.sampler import GaussianSampler

    loss = default_loss(mode="pairs", active_refresh=100, active_refresh_growth=1.5, active_refresh_extra=[2500, 2700])
    assert loss.needs_refresh(17)  # no pass yet: whatever the step, the next one makes one
    loss.refreshed = True
    assert [s for s in range(3001) if loss.needs_refresh(s)] == [0, 100, 250, 475, 813, 1319, 2078, 2500, 2700]
    passes = []
    original = GaussianSampler.refresh_active_pairs
    monkeypatch.setattr(
        GaussianSampler,
        "refresh_active_pairs",
        lambda self, points: (passes.append(self.global_step), original(self, points))[1],
    )
    cfg = cfg_factory(
        "debug=fast",
        "logger=none",
        "baseline.draws=0",
        "~callbacks.model_checkpoint",
        "model.mode=pairs",
        "model.loss.active_refresh=8",
        "model.loss.active_refresh_growth=2",
        "model.loss.active_refresh_extra=[5,13,19]",
        "trainer.max_steps=20",
    )
    fit_from_config(cfg, interactive=False)
    assert passes == [0, 5, 8, 13, 19]  # growth 2 from 8: 0, 8, 24; plus 5, 13, 19
    for bad in (5, "6000", [1.5], [-1], [True]):
        with pytest.raises(JLInputError, match="model.loss.active_refresh_extra"):
            default_loss(mode="pairs", active_refresh_extra=bad)
    # active_refresh=null: no schedule, the passes are step 0 and the listed steps
    listed = default_loss(mode="pairs", active_refresh=None, active_refresh_extra=[200, 500, 6400])
    assert listed.needs_refresh(0)
    listed.refreshed = True
    assert [s for s in range(7001) if listed.needs_refresh(s)] == [200, 500, 6400]
    with pytest.raises(JLInputError, match="model.loss.active_refresh must be"):
        default_loss(mode="pairs", active_refresh=0)


def test_references_stop_at_their_time_budget():
    X = np.random.default_rng(0).standard_normal((60, 10))
    figures = reference_figures(X, 3, "pairs", draws=200, methods=["gaussian"], budget_s=1e-9)
    assert figures["gaussian"]["draws"] == 1  # the first pass measures one draw, then the budget is spent
    assert figures["gaussian"]["seconds"] > 0
    full = reference_figures(X, 3, "pairs", draws=40, methods=["gaussian"], budget_s=None)
    assert full["gaussian"]["draws"] == 40


@pytest.mark.parametrize("draws, budget_s", [(20, None), (16, None), (40, 1e-9)])
def test_pca_shares_the_gaussian_draws_last_pass_with_the_same_figures(draws, budget_s):
    """PCA rides in the Gaussian draws' last pass where it has room (20 draws: passes of 16
    and 4), else gets its own (16: the pass is full); under a budget it is measured with the
    first draws (first_pass): its figures are those of its own screened pass, and the
    Gaussian ones do not move."""
    from jl_lightning.baselines.references import pca_baseline

    X = clustered_with_ties()
    both = reference_figures(X, 4, "pairs", draws=draws, methods=["gaussian", "pca"], budget_s=budget_s)
    alone = reference_figures(X, 4, "pairs", draws=draws, methods=["gaussian"], budget_s=budget_s)["gaussian"]
    own = pca_baseline(X, 4, "pairs")
    assert both["pca"]["epsilon"] == own["epsilon"] and both["pca"]["epsilon_scaled"] == own["epsilon_scaled"]
    shared = "first_pass" if budget_s is not None else ("gaussian" if draws == 20 else None)
    assert both["pca"].get("pass_shared_with") == shared
    assert {key: both["gaussian"][key] for key in ("draws", "mean", "best")} == {
        key: alone[key] for key in ("draws", "mean", "best")
    }
    assert "riders" not in both["gaussian"]
    # PCA first: its own pass, nothing rides (under a budget: the first draws' pass all the same)
    first = reference_figures(X, 4, "pairs", draws=draws, methods=["pca", "gaussian"], budget_s=budget_s)
    assert first["pca"]["epsilon"] == own["epsilon"] and first["pca"].get("pass_shared_with") == (
        "first_pass" if budget_s is not None else None
    )


def test_under_a_budget_the_first_draws_and_pca_share_one_pass(monkeypatch):
    """At scale one pass costs about the same for one map or several: under a budget the first
    draw of every random method and PCA are measured in one pass, and each method's figures
    are those of the same draws measured alone."""
    from jl_lightning.baselines import references

    X = clustered_with_ties()
    calls = []
    real = references.evaluate
    monkeypatch.setattr(references, "evaluate", lambda maps, *a, **kw: calls.append(len(maps)) or real(maps, *a, **kw))
    methods = ["gaussian", "sparse", "srht", "pca"]
    budgeted = reference_figures(X, 4, "pairs", draws=50, methods=methods, budget_s=1e-9)
    assert calls == [4]  # one pass: three first draws and PCA; then the budget is spent
    assert all(budgeted[m]["draws"] == 1 for m in ("gaussian", "sparse", "srht"))
    for method in ("gaussian", "sparse", "srht"):
        alone = reference_figures(X, 4, "pairs", draws=1, methods=[method], budget_s=None)[method]
        assert budgeted[method]["best"] == alone["best"]


MEMORY_PROBE = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from jl_lightning.metrics import evaluate
    n, d = 20000, 64
    X = np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    A = np.random.default_rng(1).standard_normal((16, d)) / 4
    evaluate(A, X[:2000], "pairs", screen=True)  # load kernels and allocator pools
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = evaluate(A, X, "pairs", worst=8192)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"grew_kb": after - before, "count": report.count}))
""")


def test_an_exact_pass_at_twenty_thousand_points_stays_in_bounded_memory():
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE], capture_output=True, text=True, check=True)
    probe = json.loads(out.stdout)
    assert probe["count"] == 20000 * 19999 // 2
    # n^2 float64 would be 3.2 GB; the pass needs a few tiles and 2 floats per point
    assert probe["grew_kb"] < 150 * 1024


def test_training_on_clusters_beats_the_best_of_twenty_gaussian_draws(cfg_factory):
    from jl_lightning.apps.train import train

    summary, _ = train(
        cfg_factory(
            "experiment=clusters_1e5",
            "data.source.n=400",
            "data.source.d=48",
            "data.source.clusters=8",
            "data.source.cache_dir=null",
            "model.k=8",
            "model.loss.active_hard=512",
            "model.loss.active_random=2000",
            "model.loss.active_refresh=20",
            "trainer.max_steps=400",
            "callbacks.distortion_tracker.every_n_steps=100",
            "logger=none",
            "seed=0",
        )
    )
    gaussian = summary["references"]["gaussian"]
    assert gaussian["draws"] == 20
    assert summary["final_distortion"] < 0.75 * gaussian["best"]
    # certified by one exact pass: the summary's figure is the final matrix's exact epsilon
    assert summary["final_report"]["count"] == 320 * 319 // 2


def test_a_zero_map_ties_every_pair_and_the_screened_pass_still_answers():
    """At M = 0 (a sampler's first refresh) every ratio is 0: epsilon 1, every pair tied."""
    X = clustered_with_ties()
    report = evaluate(np.zeros((3, 12)), X, "pairs", screen=True, worst=10, memory_budget=SMALL_TILES)
    assert report.epsilon == 1.0 and report.min_ratio == report.max_ratio == 0.0
    assert report.count == 300 * 299 // 2 - 4 and list(report.worst[2]) == [1.0] * 10


@pytest.mark.parametrize("screen, exact_topk", [(True, None), (False, None), (True, 1000)])
def test_candidates_are_the_worst_pairs_up_to_float32_rounding(screen, exact_topk, monkeypatch):
    """``candidates=C``: C pairs, worst first, whose deviations are the brute-force ones
    (float32-accurate when screened, exact otherwise) and that are the C worst, up to
    float32 rounding at the boundary; a sharded pass merges to the same candidates.
    ``exact_topk``: the streaming top-K merges by a sampled threshold above that K."""
    from jl_lightning.core.sharding import Shard
    from jl_lightning.metrics.distortion import merge_reports

    if exact_topk:
        monkeypatch.setattr("jl_lightning.metrics.topk.EXACT_TOPK", exact_topk)
        monkeypatch.setattr("jl_lightning.metrics.topk.MERGE_SAMPLE", 512)

    X = clustered_with_ties()
    A = np.random.default_rng(3).standard_normal((4, 12)) / 2
    dev, i, j, _, _ = all_pairs(A, X)
    lookup = {(a, b): v for a, b, v in zip(i, j, dev)}
    C = 5000  # several times a 64-row tile's pairs: the buffered top-K merges many times
    report = evaluate(A, X, "pairs", screen=screen, worst=7, candidates=C, memory_budget=SMALL_TILES)
    ci, cj, values, sq_distances = report.candidates
    assert len(ci) == C and len(set(zip(ci.tolist(), cj.tolist()))) == C
    truth = np.array([lookup[(a, b)] for a, b in zip(ci, cj)])
    np.testing.assert_allclose(values, truth, rtol=1e-4 if screen else 1e-12)
    np.testing.assert_allclose(sq_distances, ((X[ci] - X[cj]) ** 2).sum(1), rtol=1e-4 if screen else 1e-12)
    assert np.all(np.diff(values) <= 0)
    boundary = np.sort(dev)[::-1][C - 1]
    assert truth.min() >= boundary * (1 - 1e-4)
    # the exact worst K are unchanged by asking for candidates
    np.testing.assert_allclose(report.worst[2], np.sort(dev)[::-1][:7], rtol=1e-12)
    parts = [
        evaluate(A, X, "pairs", screen=screen, worst=7, candidates=C, memory_budget=SMALL_TILES, shard=Shard(r, 2))
        for r in range(2)
    ]
    merged = merge_reports(parts).candidates
    assert set(zip(merged[0].tolist(), merged[1].tolist())) == set(zip(ci.tolist(), cj.tolist()))
