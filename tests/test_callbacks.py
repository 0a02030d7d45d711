"""Callbacks inside a real Trainer fit (in-process, small data)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lightning.pytorch import Callback

from jl_lightning.apps.train import train
from jl_lightning.errors import DuplicatePointsWarning
from jl_lightning.lightning.callbacks import DeterministicSwitch, DistortionTracker, VarianceMonitor
from jl_lightning.metrics import evaluate
from tests.helpers import pair_ratios

SMALL = [
    "data.source.n=30",
    "data.source.d=60",
    "model.k=8",
    "model.n_samples=8",
    "baseline.draws=10",
    "logger=none",
    "log_every=10",
    "callbacks.model_checkpoint.every_n_train_steps=50",
]


def fit(cfg_factory, *overrides):
    """Run train() in-process; its (summary, trainer, model) for inspection."""
    summary, objects = train(cfg_factory(*SMALL, *overrides))
    return summary, objects["trainer"], objects["model"]


def callback(trainer, cls):
    return next(c for c in trainer.callbacks if isinstance(c, cls))


def test_switch_fires_and_sigma2_is_exactly_zero_afterwards(cfg_factory):
    summary, trainer, model = fit(
        cfg_factory,
        "trainer.max_steps=150",
        "model.variance=log",
        "optimizer.lr=0.05",
        "callbacks.deterministic_switch.threshold=0.5",
    )
    switch = callback(trainer, DeterministicSwitch)
    assert switch.switch_step is not None and 0 < switch.switch_step < 150
    assert summary["switch_step"] == switch.switch_step
    assert model.variance.value().item() == 0.0 and model.deterministic
    assert not model.variance.theta.requires_grad
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), name
    # after the switch the loss is the deterministic distortion of M / sqrt(k)
    points = trainer.datamodule.train_points
    loss, sampled, s2 = model.objective(points)
    det = evaluate(model.embedding, trainer.datamodule.points, "norms").epsilon
    assert float(s2) == 0.0
    assert float(loss.detach()) == pytest.approx(det, rel=1e-4, abs=1e-6)


def test_raw_sigma2_collapsing_to_zero_never_makes_nan(cfg_factory):
    """The paper's raw sigma^2 reaches exactly 0 under Adam; threshold 0 switches only then."""
    summary, trainer, model = fit(
        cfg_factory,
        "trainer.max_steps=400",
        "model.variance=raw",
        "callbacks.deterministic_switch.threshold=0.0",
        "scheduler=constant",
    )
    assert summary["switch_step"] is not None, "raw sigma^2 should reach exactly 0 within 400 steps"
    assert summary["sigma2_final"] == 0.0
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert math.isfinite(summary["final_distortion"])


class Sigma2Trace(Callback):
    """A reference for the monitor: sigma^2 after every optimizer step, read independently."""

    def __init__(self):
        self.trace = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.trace.append((trainer.global_step, pl_module.sigma2()))


def test_variance_monitor_records_the_first_step_below_each_threshold(cfg_factory, monkeypatch):
    from jl_lightning.lightning import targets

    declared = targets.allowed  # the test's own callback class joins the allowlist, for this test only
    monkeypatch.setattr(
        targets, "allowed", lambda target, hydra_node=False: target.startswith("tests.") or declared(target)
    )
    summary, trainer, model = fit(
        cfg_factory,
        "trainer.max_steps=300",
        "model.variance=raw",
        "scheduler=constant",
        "callbacks.deterministic_switch.threshold=0",
        "+callbacks.trace._target_=tests.test_callbacks.Sigma2Trace",
    )
    # instantiated by Hydra from tests.test_callbacks, a module object of its own: found by name
    trace = next(c for c in trainer.callbacks if type(c).__name__ == "Sigma2Trace").trace
    assert [step for step, _ in trace] == list(range(1, 301))
    expected = {f"{t:g}": min(step for step, s2 in trace if s2 <= t) for t in (0.1, 0.01, 0.001)}
    assert len(set(expected.values())) == 3  # three distinct steps: the test tells them apart
    assert callback(trainer, VarianceMonitor).crossings == expected == summary["sigma2_crossings"]


def test_sigma2_is_logged_at_every_step_while_it_decays(cfg_factory):
    """The paper's raw sigma^2 falls to exactly 0 within a few hundred steps: its curve has a
    point at every step up to 100 and every 10th after, up to the switch (not a few points
    and a cliff); the step where it became 0 is there with 0; afterwards only the regular
    gate (log_every = 10) logs it."""
    summary, trainer, model = fit(
        cfg_factory,
        "trainer.max_steps=300",
        "model.variance=raw",
        "scheduler=constant",
        "callbacks.deterministic_switch.threshold=0",
    )
    history = summary["sigma2_history"]
    switch = summary["switch_step"]
    assert switch is not None and 100 < switch < 300
    steps = [step for step, _ in history]
    expected = [s for s in range(switch) if s <= 100 or s % 10 == 0] + [switch]
    assert [s for s in steps if s <= switch] == expected
    values = dict(history)
    assert values[0] == pytest.approx(1.0) and all(values[s] > 0 for s in expected[:-1])
    assert values[switch] == 0.0
    after = [step for step in steps if step > switch]
    assert after == [s for s in range(switch + 1, 301) if s % 10 == 0]


def test_tracker_keeps_the_best_matrix(cfg_factory):
    summary, trainer, model = fit(cfg_factory, "trainer.max_steps=200")
    tracker = callback(trainer, DistortionTracker)
    assert tracker.best_distortion == pytest.approx(summary["best_distortion"])
    # the best is the smallest of every evaluation, and it is the matrix that was exported
    assert tracker.best_distortion == min(eps for _, _, eps in tracker.history)
    exported = np.load(f"{summary['run_dir']}/embedding.npy")
    np.testing.assert_array_equal(exported, tracker.best_embedding.double().numpy())
    X = trainer.datamodule.points
    ratios = ((X @ exported.T) ** 2).sum(1) / (X**2).sum(1)
    assert np.abs(ratios - 1).max() == pytest.approx(tracker.best_distortion, rel=1e-9)


def csv_rows(trainer) -> list[dict]:
    import csv

    path = next(iter(trainer.loggers)).log_dir + "/metrics.csv"
    return list(csv.DictReader(open(path)))


def logged(rows, tag) -> dict[int, float]:
    return {int(r["step"]): float(r[tag]) for r in rows if r.get(tag)}


def test_logged_values_belong_to_their_step(cfg_factory):
    """Every tag is logged under the number of updates behind the matrix it describes: the
    loss of a step under the count before its update, sigma^2 and the exact epsilon under the
    count after it; no epoch tag."""
    summary, trainer, model = fit(
        cfg_factory,
        "trainer.max_steps=40",
        "logger=csv",
        "model.variance=log",
        "callbacks.deterministic_switch.threshold=0",
    )
    rows = csv_rows(trainer)
    assert "epoch" not in rows[0]
    assert sorted(logged(rows, "train/loss")) == [0, 10, 20, 30]
    assert sorted(logged(rows, "1_distortion/train")) == [10, 20, 30, 40]
    sigma2 = logged(rows, "2_variance/sigma2")
    assert sorted(sigma2) == list(range(41))  # every step while sigma^2 decays (<= 100 steps)
    assert sigma2[40] == pytest.approx(summary["sigma2_final"], rel=1e-6)
    assert logged(rows, "2_variance/log10_sigma2")[40] == pytest.approx(math.log10(summary["sigma2_final"]), rel=1e-6)
    assert logged(rows, "1_distortion/train")[40] == pytest.approx(summary["final_distortion"], rel=1e-9)


def test_loss_and_exact_epsilon_agree_at_the_same_step(cfg_factory):
    """Deterministic from the start (sigma^2 = 0): the loss logged at step s is the hard max
    distortion of the same M that the tracker measured exactly at step s."""
    summary, trainer, model = fit(
        cfg_factory,
        "trainer.max_steps=40",
        "logger=csv",
        "model.init_variance=0.0",
        "model.init_mean=gaussian",
        "callbacks.deterministic_switch.threshold=0",
    )
    rows = csv_rows(trainer)
    loss, exact = logged(rows, "train/loss"), logged(rows, "1_distortion/train")
    for step in (10, 20, 30):
        assert loss[step] == pytest.approx(exact[step], rel=1e-5)
    marker = logged(rows, "2_variance/deterministic")
    assert marker[0] == 1.0 and marker[40] == 1.0


def test_direct_optimization_control_is_a_config(cfg_factory):
    """sigma^2 fixed at 0 from one Gaussian draw: the switch fires before the first step."""
    summary, trainer, model = fit(
        cfg_factory,
        "trainer.max_steps=50",
        "model.init_variance=0.0",
        "model.init_mean=gaussian",
        "callbacks.deterministic_switch.threshold=0",
    )
    assert summary["switch_step"] == 0
    assert np.isfinite(summary["final_distortion"])


# ------------------------------------------------------------------ the contract
class MinimalModule:
    """Only the module contract (jl_lightning/lightning/contract.py), nothing of Lightning."""

    k, dim, mode = 2, 3, "norms"

    def __init__(self, matrix, sigma2):
        self._matrix, self._sigma2, self.logged = torch.as_tensor(matrix, dtype=torch.float64), sigma2, {}

    @property
    def embedding(self):
        return self._matrix

    @property
    def deterministic(self):
        return self._sigma2 == 0.0

    def sigma2(self):
        return self._sigma2

    def freeze_variance(self):
        self._sigma2 = 0.0

    def run_report(self):
        return None

    def log_dict(self, metrics, **kwargs):
        self.logged.update(metrics)


class MinimalData:
    """Only the data contract."""

    name, duplicates, data_scale = "three points", None, 1.0

    def __init__(self, points, val_points=None):
        self.points, self.val_points = points, val_points
        self.val_index = None if val_points is None else np.arange(len(val_points))


def test_every_callback_works_against_the_bare_contract():
    from types import SimpleNamespace

    from jl_lightning.lightning.callbacks import ReferenceLines, RunSummary
    from jl_lightning.lightning.contract import JLData, JLModule

    X = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 1.0]])
    A = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 0.0]])
    module, data = MinimalModule(A, 0.05), MinimalData(X, val_points=X[:2] * 3)
    assert isinstance(module, JLModule) and isinstance(data, JLData)
    callbacks = [
        VarianceMonitor(thresholds=(0.1, 0.01), every_n_steps=1),
        DeterministicSwitch(threshold=0.01),
        DistortionTracker(every_n_steps=1),
        ReferenceLines(draws=3, methods=["gaussian"]),
        RunSummary(),
    ]
    trainer = SimpleNamespace(
        global_step=0, max_steps=2, datamodule=data, loggers=[], callbacks=callbacks, is_global_zero=True
    )
    for cb in callbacks:
        cb.on_fit_start(trainer, module)
        cb.on_train_start(trainer, module)
    for step, s2 in ((1, 0.05), (2, 0.005)):
        trainer.global_step, module._sigma2 = step, s2
        for cb in callbacks:
            cb.on_train_batch_end(trainer, module, None, None, step - 1)
    for cb in callbacks:
        cb.on_train_end(trainer, module)
        cb.on_fit_end(trainer, module)
    summary = callbacks[-1].summary
    # brute force: ratios 1, 0.25, 1.25/3 -> epsilon 0.75 on the points
    assert summary["final_distortion"] == pytest.approx(0.75)
    assert summary["switch_step"] == 2 and module.deterministic
    assert summary["sigma2_crossings"] == {"0.1": 1, "0.01": 2}
    assert summary["heldout"]["points"]["epsilon"] == pytest.approx(0.75)
    assert summary["baseline_gaussian"]["draws"] == 3
    assert module.logged["1_distortion/train"] == pytest.approx(0.75)
    np.testing.assert_array_equal(callbacks[-1].embedding, A)


def test_summary_holds_the_recall_of_the_exported_matrix_and_of_each_reference(cfg_factory):
    from jl_lightning.baselines.references import dense_map
    from jl_lightning.lightning.callbacks import ReferenceLines
    from jl_lightning.metrics.neighbors import recall_at_k

    summary, trainer, model = fit(
        cfg_factory, "trainer.max_steps=100", "data.source.n=60", "callbacks.recall.queries=25"
    )
    points = trainer.datamodule.points
    recall = summary["recall"]
    assert recall["k"] == 10 and recall["queries"] == 25
    exported = np.load(summary["run_dir"] + "/embedding.npy")
    assert recall["learned"] == pytest.approx(recall_at_k(exported, points, 10, queries=25), abs=1e-12)
    maps = callback(trainer, ReferenceLines).maps
    assert set(recall) >= {"gaussian", "sparse", "srht", "pca"}
    assert recall["srht"] == pytest.approx(recall_at_k(dense_map(maps["srht"], 60), points, 10, queries=25), abs=1e-12)


def test_selection_points_choose_the_export_and_never_include_held_out_points(cfg_factory):
    """data.select_fraction: the selection points are training points the loss never sees, disjoint
    from the held-out points; the exported matrix is the evaluated one with the lowest epsilon over
    every pair that involves a selection point (brute force here)."""
    summary, trainer, model = fit(
        cfg_factory,
        "trainer.max_steps=120",
        "data.source.n=60",
        "model.mode=pairs",
        "data.val_fraction=0.2",
        "data.select_fraction=0.25",
        "callbacks.distortion_tracker.every_n_steps=10",
    )
    data = trainer.datamodule
    train, select, held = set(data.train_index), set(data.select_index), set(data.val_index)
    assert not (train & select) and not (select & held) and not (train & held)
    assert len(train | select | held) == 60 and len(select) == 12  # a quarter of the 48 training points
    assert len(data.points) == 36 and model.loss_fn.points.shape[0] == 36  # the loss sees the rest only
    history = summary["selection"]["history"]
    best_step, best_score = min(history, key=lambda entry: entry[1])
    assert summary["best_step"] == best_step and summary["selection"]["best"] == best_score
    exported = np.load(summary["run_dir"] + "/embedding.npy")
    everything = np.vstack([data.points, data.select_points])
    ratios, _, j, _ = pair_ratios(exported, everything)
    touches = j >= len(data.points)  # pairs with at least one selection point
    brute = np.abs(ratios[touches] - 1).max()
    assert best_score == pytest.approx(brute, rel=1e-9)


@pytest.mark.parametrize(
    "extra", [(), ("data.select_fraction=0.3",), ("trainer.max_steps=125",)]
)  # 125: the last step is not a multiple of the tracker's period
def test_the_best_checkpoint_holds_the_exported_matrix(cfg_factory, extra):
    """checkpoints/best-step<S>-eps<E>.ckpt is the step summary.json exports, chosen as the
    tracker chooses (training epsilon, or the selection points' with data.select_fraction),
    in a run far shorter than the periodic checkpoints' 500 steps, whatever its step count;
    its M / sqrt(k) is embedding.npy."""
    from pathlib import Path

    summary, objects = train(cfg_factory(*SMALL, "trainer.max_steps=120", "log_every=10", "model.mode=pairs", *extra))
    folder = Path(objects["cfg"].paths.output_dir) / "checkpoints"
    (best,) = sorted(folder.glob("best-step*.ckpt"))
    step = summary["best_step"]
    assert best.name == f"best-step{step}-eps{summary['best_distortion']:.3e}.ckpt"
    mean = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]["mean"]
    exported = (mean.double() / math.sqrt(mean.shape[0])).numpy()
    embedding = next(c for c in objects["callbacks"] if c.__class__.__name__ == "RunSummary").embedding
    np.testing.assert_allclose(exported, embedding, rtol=1e-6, atol=1e-7)
    if "data.select_fraction=0.3" in extra:  # chosen on the selection points, not on the training epsilon
        assert summary["best_step"] == min(summary["selection"]["history"], key=lambda h: h[1])[0]


def test_summary_duplicates_are_the_exact_pass_count_by_the_one_rule(cfg_factory, tmp_path):
    """summary.json's duplicate pairs are the final exact pass's zero-distance pairs, judged by
    core.pairs.far_apart, and equal a brute-force count of identical training rows."""
    from jl_lightning.core.pairs import far_apart

    rng = np.random.default_rng(0)
    base = rng.standard_normal((20, 6))
    points = np.vstack([base, base[:3], base[:1]])  # row 0 three times, rows 1 and 2 twice
    np.save(tmp_path / "dup.npy", points)
    cfg = cfg_factory(
        "data=file",
        f"data.source.path={tmp_path / 'dup.npy'}",
        "model.mode=pairs",
        "model.k=3",
        "trainer.max_steps=20",
        "baseline.draws=2",
        "logger=none",
        "log_every=10",
        "callbacks.model_checkpoint.every_n_train_steps=10",
    )
    with pytest.warns(DuplicatePointsWarning, match="4 duplicate row"):
        summary, objects = train(cfg)
    X = objects["datamodule"].points
    i, j = np.triu_indices(len(X), 1)
    diff = X[i] - X[j]
    brute = int((~far_apart((diff**2).sum(1), (X[i] ** 2).sum(1) + (X[j] ** 2).sum(1))).sum())
    assert summary["duplicates"] == {"rows": 4, "pairs": brute}
    assert summary["final_report"]["zero_distance_pairs"] == brute and brute == 3 + 1 + 1
