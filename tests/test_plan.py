"""The auto settings: what core/plan.py chooses from n, d, k and the steps, and how a fit
applies them (every value set explicitly wins; the choice is logged and in summary.json)."""

from __future__ import annotations

import numpy as np
import pytest

from jl_lightning.apps.config import compose
from jl_lightning.core.plan import FEW_PAIRS, PASS_FRACTIONS, choose, pair_count
from jl_lightning.lightning.fit import resolve_auto

# what experiment=digits_pairs and experiment=clusters_1e5 set by hand before their settings
# became the defaults' (the measured recipes, docs/benchmarks.md and docs/scale.md)
DIGITS_RECIPE = {"active_hard": 8192, "active_refresh": 50, "active_candidates": 0, "lr": 0.02,
                 "smooth_temperature_end": 1e-4, "subspace_penalty": 0.3, "n_samples": 20,
                 "lr_horizon": 5000}  # fmt: skip
CLUSTERS_RECIPE = {"active_hard": 8192, "active_refresh": None, "active_candidates": 2097152, "active_rescan": 20,
                   "active_refresh_extra": (200, 500, 1000, 1700, 2500, 3400, 4300, 5100, 5800, 6400),
                   "smooth_temperature_end": 1e-3, "lr": 0.005, "n_samples": 10, "lr_horizon": 7500,
                   "subspace_penalty": 0.0, "certify_every": 7000}  # fmt: skip


def fields(plan, names):
    return {name: getattr(plan, name) for name in names}


def test_the_recipes_sizes_get_the_recipes_settings():
    digits = choose(mode="pairs", n=1438, d=64, k=16, steps=5000)
    assert digits.regime == "few_pairs" and fields(digits, DIGITS_RECIPE) == DIGITS_RECIPE
    clusters = choose(mode="pairs", n=100_000, d=384, k=32, steps=7000)
    assert clusters.regime == "many_pairs" and fields(clusters, CLUSTERS_RECIPE) == CLUSTERS_RECIPE


def test_the_regime_changes_where_the_pairs_pass_two_to_the_22():
    n = int((1 + np.sqrt(1 + 8 * FEW_PAIRS)) / 2)  # the largest n with at most 2^22 pairs
    assert pair_count(n) <= FEW_PAIRS < pair_count(n + 1)
    assert choose(mode="pairs", n=n, d=10, k=5, steps=1000).regime == "few_pairs"
    assert choose(mode="pairs", n=n + 1, d=10, k=5, steps=1000).regime == "many_pairs"


@pytest.mark.parametrize("steps", [50, 300, 1000, 5000, 7000, 20_000])
def test_passes_are_fractions_of_the_run_and_the_rate_lets_sigma2_reach_zero(steps):
    plan = choose(mode="pairs", n=50_000, d=384, k=32, steps=steps)
    passes = plan.active_refresh_extra
    assert list(passes) == sorted(set(passes)) and all(0 < p < steps for p in passes)
    expected = sorted({max(1, round(f * steps)) for f in PASS_FRACTIONS} - {steps})
    assert list(passes) == expected and len(passes) == (10 if steps >= 100 else len(expected))
    # Adam moves sigma^2 by about lr a step; the cosine's mean rate is half the peak: the run
    # can move it by lr * steps / 2, which must cover its way from 1 to 0 (up to the cap)
    assert plan.lr * steps / 2 >= min(3.0, 0.05 * steps / 2) - 1e-12
    small = choose(mode="pairs", n=500, d=20, k=5, steps=steps)
    assert small.active_refresh == max(10, round(steps / 100))
    assert small.lr == max(0.02, min(0.05, 6 / steps))


def test_norms_mode_keeps_the_papers_rate_at_any_budget():
    for steps in (20, 5000):
        plan = choose(mode="norms", n=1000, d=1000, k=30, steps=steps)
        assert plan.lr == 0.01 and plan.subspace_penalty == 0.0 and plan.lr_horizon == steps


def test_a_fit_resolves_only_what_is_auto_and_records_the_choice():
    cfg = compose(["model.mode=pairs", "optimizer.lr=0.03", "model.loss.active_hard=100", "trainer.max_steps=700"])
    resolved, settings = resolve_auto(cfg, n=3000, dim=40)
    assert resolved.optimizer.lr == 0.03 and resolved.model.loss.active_hard == 100  # set: kept
    chosen = settings["chosen"]
    assert "optimizer.lr" not in chosen and "model.loss.active_hard" not in chosen
    assert settings["regime"] == "many_pairs" and (settings["n"], settings["d"], settings["steps"]) == (3000, 40, 700)
    plan = choose(mode="pairs", n=3000, d=40, k=int(cfg.model.k), steps=700)
    assert chosen["model.loss.active_refresh_extra"] == list(plan.active_refresh_extra)
    assert resolved.scheduler.T_max == plan.lr_horizon == 750
    assert resolved.callbacks.distortion_tracker.every_n_steps == 700  # many pairs: the last step only
    assert cfg.optimizer.lr == 0.03 and cfg.model.loss.active_refresh_extra == "auto"  # the input is not changed


def test_every_auto_in_the_defaults_is_resolved_before_anything_is_built():
    for mode in ("norms", "pairs"):
        resolved, _ = resolve_auto(compose([f"model.mode={mode}"]), n=200, dim=30)
        flat = str(resolved.model) + str(resolved.optimizer) + str(resolved.scheduler) + str(resolved.callbacks)
        leftover = [token for token in flat.replace("'", " ").split() if token.strip(",{}[]:") == "auto"]
        # sampling, smooth_temperature and data.normalize keep their own auto (resolved by the loss and data)
        assert len(leftover) == 2, flat
        assert resolved.trainer.max_steps == 5000  # the trainer's auto too


def test_the_default_pairs_fit_converges_on_a_short_budget():
    """300 steps on digits without a recipe used to leave sigma^2 at 0.25 and M near 0: the
    rate now lets sigma^2 reach 0 within the budget, and the exported M is better than M = 0
    (epsilon 1), by a brute-force count."""
    datasets = pytest.importorskip("sklearn.datasets")
    from jl_lightning import JLEmbedding

    X = datasets.load_digits().data[:600] / 16
    emb = JLEmbedding(n_components=8, mode="pairs", max_steps=300).fit(X)
    assert emb.converged_ and emb.sigma2_final_ == 0.0 and emb.switch_step_ < 300
    Y = X @ emb.components_.T
    i, j = np.triu_indices(len(X), 1)
    original = ((X[i] - X[j]) ** 2).sum(1)
    keep = original > 0
    brute = np.abs(((Y[i] - Y[j]) ** 2).sum(1)[keep] / original[keep] - 1).max()
    assert brute == pytest.approx(emb.training_distortion_, rel=1e-6) and brute < 0.995


def test_no_exact_pass_while_m_is_zero_and_a_ranking_pass_once_it_is_not():
    """At M = 0 every pair ties at deviation 1: the module keeps a seeded random draw of hard
    pairs instead of a pass; with M != 0 the pass keeps the worst pairs, by brute force."""
    import torch

    from jl_lightning.core.pairs import random_pairs
    from tests.helpers import pair_ratios, sampler

    X = torch.randn(40, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    model = sampler(k=3, dim=6, mode="pairs", active_hard=15, active_refresh=5, active_refresh_extra=[])
    model.refresh_active_pairs(X.float())
    i, j = random_pairs(40, 15, np.random.default_rng(0).integers)
    assert model.loss_fn.refreshed and (model.loss_fn.active.hard_i.numpy() == i).all()
    assert (model.loss_fn.active.hard_j.numpy() == j).all()
    with torch.no_grad():
        model.mean.copy_(torch.randn(3, 6, generator=torch.Generator().manual_seed(1)))
    model.refresh_active_pairs(X.float())
    ratios, bi, bj, _ = pair_ratios(model.embedding.double().numpy(), X.numpy())
    worst = set(zip(*(a[np.argsort(-np.abs(ratios - 1))[:15]] for a in (bi, bj))))
    got = {
        (min(a, b), max(a, b))
        for a, b in zip(model.loss_fn.active.hard_i.tolist(), model.loss_fn.active.hard_j.tolist())
    }
    assert got == {(min(a, b), max(a, b)) for a, b in worst}


@pytest.mark.parametrize("heldout, over", [(0.6, True), (0.45, False)])
def test_a_heldout_gap_over_the_limit_is_said_with_what_may_help(heldout, over):
    from jl_lightning.apps.train import final_line
    from jl_lightning.lightning.fit import HELDOUT_LIMIT, heldout_gap

    summary = {"best_distortion": 0.4, "final_distortion": 0.4, "baseline_gaussian": None, "run_dir": "r",
               "heldout": {"pairs": {"epsilon": heldout}}}  # fmt: skip
    summary["heldout_gap"] = gap = heldout_gap(summary)
    assert gap["ratio"] == pytest.approx(heldout / 0.4) and gap["within"] is (not over) and HELDOUT_LIMIT == 1.25
    line = final_line(summary)
    assert ("held-out pairs 1.50 x training" in line and "model.subspace_penalty" in line) is over
    assert ("held-out" in line) is over
    assert heldout_gap({"best_distortion": 0.4, "heldout": None}) is None


def test_at_m_zero_the_candidates_are_random_pairs_that_the_rescans_rank():
    """With candidates (the many-pairs regime) the active set at M = 0 is a seeded random draw
    of C pairs, duplicates left out, with their exact squared distances; the first rescan
    picks the worst of them under the current M, by brute force."""
    import torch

    from jl_lightning.core.pairs import random_pairs
    from tests.helpers import sampler

    X = torch.randn(50, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    X[7] = X[3]  # a duplicate: its pairs are not candidates
    model = sampler(k=3, dim=6, mode="pairs", active_hard=10, active_candidates=300, active_refresh=None,
                    active_refresh_extra=[40])  # fmt: skip
    model.refresh_active_pairs(X.float())
    loss = model.loss_fn
    i, j = random_pairs(50, 300, np.random.default_rng(0).integers)
    centered = X.float() - X.float().mean(0)
    distance = ((centered[i] - centered[j]) ** 2).sum(1).numpy()
    keep = ~(((i == 3) | (i == 7)) & ((j == 3) | (j == 7)))
    ci, cj, csq, _ = loss.candidates
    order = np.argsort(i[keep], kind="stable")
    assert (ci.numpy() == i[keep][order]).all() and (cj.numpy() == j[keep][order]).all()
    assert np.allclose(csq.numpy(), distance[keep][order], rtol=1e-6)
    assert (loss.active.hard_i.numpy() == i[keep][:10]).all()
    with torch.no_grad():
        model.mean.copy_(torch.randn(3, 6, generator=torch.Generator().manual_seed(1)))
    loss.rescan(model.mean)
    A = (model.mean.detach().double() / np.sqrt(3)).numpy()
    dev = (
        np.abs(((centered.double().numpy()[ci] - centered.double().numpy()[cj]) @ A.T) ** 2).sum(1)
        / csq.double().numpy()
    )
    worst = set(zip(ci.numpy()[np.argsort(-np.abs(dev - 1))[:10]], cj.numpy()[np.argsort(-np.abs(dev - 1))[:10]]))
    assert set(zip(loss.active.hard_i.tolist(), loss.active.hard_j.tolist())) == worst


def test_auto_steps_shrink_only_where_a_step_multiplies_wide_points_by_a_large_k():
    """trainer.max_steps: auto keeps 5000 steps at every measured shape up to the wide real set
    (12,000 x 1536 -> 128) and gives fewer where a step's product is larger: at 10^4 x 4096 ->
    256 the steps cost what 5000 of the wide set's cost, counted as touched rows x d x k."""
    cases = {
        # (n, d, k): steps, samples per step. A step touches min(n, 2 x (8192 hard + 10000
        # random pairs)) rows; 1.2e13 multiply-adds is about the wide set's 5000 steps, and a
        # step over a 5000th of it draws 2 sampled matrices instead of 10
        (12000, 1536, 128): (5000, 10),
        (100000, 384, 32): (5000, 10),
        (10000, 4096, 256): (int(1.2e13 // (10000 * 4096 * 256)), 2),
        (100000, 4096, 256): (1000, 2),  # the floor
    }
    for (n, d, k), (steps, samples) in cases.items():
        resolved, settings = resolve_auto(compose(["model.mode=pairs", f"model.k={k}"]), n=n, dim=d)
        assert resolved.trainer.max_steps == steps == settings["steps"], (n, d, k)
        assert settings["chosen"]["trainer.max_steps"] == steps
        assert resolved.model.n_samples == samples, (n, d, k)
        # the plan's schedules follow the chosen steps: the cosine ends a fifteenth past them
        assert resolved.scheduler.T_max == round(steps * 15 / 14)
    # sparse rows count their non-zeros: 10^5 TF-IDF features at 45 per row are a narrow step
    resolved, _ = resolve_auto(compose(["model.mode=pairs", "model.k=256"]), n=10000, dim=100000, width=45.0)
    assert resolved.trainer.max_steps == 5000
    # a number set by hand is kept, and not reported as chosen
    resolved, settings = resolve_auto(
        compose(["model.mode=pairs", "model.k=256", "trainer.max_steps=3000"]), n=10000, dim=4096
    )
    assert resolved.trainer.max_steps == 3000 and "trainer.max_steps" not in settings["chosen"]


def test_a_sparse_datamodule_reports_its_mean_nonzeros_per_row():
    sparse = pytest.importorskip("scipy.sparse")
    from jl_lightning.io.sources import ArrayPoints
    from jl_lightning.lightning.datamodule import JLDataModule

    X = sparse.random(300, 5000, density=0.01, format="csr", random_state=0, dtype=np.float32)
    module = JLDataModule(ArrayPoints(X), mode="pairs")
    module.setup("fit")
    kept = module.points.matrix
    assert module.width == pytest.approx(kept.nnz / kept.shape[0]) and 40 < module.width < 60
