"""What a run shows while and after it trains: TensorBoard's HParams entry and images, the
run's figures, the sweep plot, the progress line, and the Optuna search."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from jl_lightning.apps.train import train
from jl_lightning.io.figures import ratio_histogram, sweep_plot, training_curves
from jl_lightning.lightning.callbacks import JLProgressBar, ProgressLog, RunFigures, TensorBoardReport
from jl_lightning.metrics import evaluate
from jl_lightning.metrics.distortion import ratio_sample
from tests.helpers import pair_ratios

SMALL = [
    "data.source.n=30",
    "data.source.d=60",
    "model.k=8",
    "model.n_samples=8",
    "baseline.draws=16",
    "log_every=10",
    "callbacks.model_checkpoint.every_n_train_steps=50",
    "trainer.max_steps=300",
    "model.variance=raw",
    "scheduler=constant",
    "callbacks.deterministic_switch.threshold=0",
]


def callback(trainer, cls):
    return next(c for c in trainer.callbacks if isinstance(c, cls))


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory):
    """One small run with the TensorBoard logger, in-process."""
    from tests.conftest import make_cfg

    run_dir = tmp_path_factory.mktemp("monitoring") / "run"
    summary, objects = train(make_cfg(run_dir, SMALL + ["logger=tensorboard"]))
    return run_dir, summary, objects


def events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(
        str(next((run_dir / "tensorboard").glob("events.out.tfevents.*"))),
        size_guidance={"scalars": 0, "images": 0, "tensors": 0},
    )
    accumulator.Reload()
    return accumulator


def test_hparams_entry_holds_the_resolved_config_and_the_final_figures(tb_run):
    from tensorboard.plugins.hparams import plugin_data_pb2

    run_dir, summary, _ = tb_run
    acc = events(run_dir)
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["1_main/k"].number_value == 8
    assert hparams["1_main/lr"].number_value == pytest.approx(0.01)
    assert hparams["3_data/n"].number_value == summary["n"]
    assert hparams["2_sampler/temperature"].string_value == "hard max"  # what auto became
    # a curated set, one name per setting, nothing machine-specific
    assert len(hparams) < 25 and not [name for name in hparams if "dir" in name or "log_every" in name]
    assert not [name for name in hparams if name.startswith(("callbacks/", "baseline/", "logger/", "paths/"))]
    assert not [name for name in hparams if name.startswith(("model/", "optimizer/", "trainer/", "data/"))]
    # no "experiment" summary: TensorBoard builds the table from all runs, the settings that
    # differ between them first; the session ends when the run does
    assert "_hparams_/experiment" not in content and "_hparams_/session_end_info" in content
    end = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_end_info"]).session_end_info
    assert end.status == 1  # STATUS_SUCCESS
    (final,) = acc.Scalars("hp/final_distortion")  # once, at the last step (no NaN placeholder)
    assert final.step == summary["steps"]
    assert final.value == pytest.approx(summary["final_distortion"], rel=1e-6)
    wall = acc.Scalars("hp/wall_seconds")[-1]
    assert 0 < wall.value < 600


def test_hparams_table_of_two_runs_shows_what_differs_and_the_final_epsilon_first(tmp_path):
    """TensorBoard's own backend, over a folder of two runs that differ in k: the HParams table
    lists k first; the five settings the frontend shows unticked (the differing ones, then the
    rest in the backend's order) include lr; the first three metric columns hold the final
    training and held-out pairs' epsilon."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import backend_context

    from tests.conftest import make_cfg

    for job, k in ((0, 8), (1, 6)):
        extra = [f"model.k={k}", "trainer.max_steps=20", "data.val_fraction=0.25", "logger=tensorboard"]
        train(make_cfg(tmp_path / "sweep" / str(job), SMALL + extra))
    logdir = str(tmp_path / "sweep")
    runs = plugin_event_multiplexer.EventMultiplexer()
    runs.AddRunsFromDirectory(logdir)
    runs.Reload()
    tb = base_plugin.TBContext(
        logdir=logdir, multiplexer=runs, data_provider=data_provider.MultiplexerDataProvider(runs, logdir)
    )
    backend, request = backend_context.Context(tb), context.RequestContext()
    experiment = backend.experiment_from_metadata(
        request, "", True, backend.hparams_metadata(request, ""), backend.hparams_from_data_provider(request, "", 0)
    )
    assert [(h.name, h.differs) for h in experiment.hparam_infos][0] == ("1_main/k", True)
    assert not any(h.differs for h in experiment.hparam_infos[1:])
    shown = [h.name for h in sorted(experiment.hparam_infos, key=lambda h: not h.differs)][:5]
    assert shown[:2] == ["1_main/k", "1_main/lr"]
    # the table shows three metric columns at 1920 px: the final training epsilon and the
    # held-out pairs' among them
    metrics = [info.name.tag for info in experiment.metric_infos]
    assert {"1_distortion/train", "1_distortion/val_pairs"} <= set(metrics[:3]), metrics[:6]


def test_hparams_show_the_temperature_auto_becomes():
    from jl_lightning.apps.config import compose
    from jl_lightning.lightning.fit import run_hyperparameters

    pairs = run_hyperparameters(compose(["experiment=digits_pairs"]))
    exact = run_hyperparameters(compose(["model.mode=pairs", "model.loss.pair_strategy=exact"]))
    assert pairs["2_sampler/temperature"] == 0.1 and exact["2_sampler/temperature"] == "hard max"


def test_hparams_has_heldout_figures_with_a_split(cfg_factory):
    summary, objects = train(cfg_factory(*SMALL, "trainer.max_steps=30", "data.val_fraction=0.2", "logger=none"))
    metrics = callback(objects["trainer"], TensorBoardReport).metrics
    assert metrics["hp/heldout_pairs_distortion"] == pytest.approx(summary["heldout"]["pairs"]["epsilon"])
    assert metrics["hp/heldout_points_distortion"] == pytest.approx(summary["heldout"]["points"]["epsilon"])


def test_the_switch_and_sigma2_are_visible_in_tensorboard(tb_run):
    run_dir, summary, _ = tb_run
    acc = events(run_dir)
    switch = summary["switch_step"]
    marker = {e.step: e.value for e in acc.Scalars("2_variance/deterministic")}
    assert marker[0] == 0.0 and marker[switch - 1] == 0.0 and marker[switch] == 1.0 and marker[300] == 1.0
    log10 = {e.step: e.value for e in acc.Scalars("2_variance/log10_sigma2")}
    # every step from the start to the one before the switch, where sigma^2 collapses
    assert sorted(log10) == list(range(switch)) and switch > 100
    assert all(
        log10[step] == pytest.approx(math.log10(s2), abs=1e-6) for step, s2 in summary["sigma2_history"] if s2 > 0
    )
    crossings = summary["sigma2_crossings"]  # each crossing is a logged point: sigma^2 there is below it
    assert all(10 ** log10[step] <= float(t) * (1 + 1e-6) for t, step in crossings.items() if step < switch)
    sigma2 = {e.step: e.value for e in acc.Scalars("2_variance/sigma2")}
    assert sigma2[switch] == 0.0 and sigma2[switch - 1] > 0
    tags = acc.Tags()
    assert "train/sigma2" not in tags["scalars"] and "epoch" not in tags["scalars"]  # one tag per quantity
    assert {"figures/ratios", "figures/curves"} <= set(tags["images"])
    text = acc.Tensors("run/switch/text_summary")
    assert text[0].step == switch


def test_the_scalars_tab_opens_on_epsilon_and_sigma2(tb_run):
    """TensorBoard's Scalars tab lists tag groups alphabetically and opens the first two: they
    must be the exact epsilon (training and held-out) and sigma^2; the loss, the learning rate,
    the references and the hp metrics come after. Every Custom Scalars chart draws something."""
    import re

    from jl_lightning.lightning.callbacks.tensorboard_report import LAYOUT

    run_dir, _, _ = tb_run
    tags = events(run_dir).Tags()["scalars"]
    groups = sorted({tag.split("/")[0] for tag in tags})
    assert groups[:2] == ["1_distortion", "2_variance"], groups
    assert {"hp", "lr-Adam", "reference", "train"} <= set(groups[2:])
    assert {"1_distortion/train", "2_variance/sigma2", "2_variance/log10_sigma2"} <= set(tags)
    for category in LAYOUT.values():
        for title, (_, patterns) in category.items():
            assert all(any(re.fullmatch(p, tag) for tag in tags) for p in patterns), title


def test_held_out_epsilon_is_in_the_first_group(cfg_factory):
    cfg = cfg_factory(*SMALL, "logger=tensorboard", "data.val_fraction=0.25", "trainer.max_steps=20")
    train(cfg)
    tags = events(Path(cfg.paths.output_dir)).Tags()["scalars"]
    assert {"1_distortion/val_points", "1_distortion/val_pairs", "1_distortion/val_train_pairs"} <= set(tags)


def test_figures_are_written_beside_the_run(tb_run):
    run_dir, summary, objects = tb_run
    for name in ("ratios.png", "curves.png"):
        data = (run_dir / "figures" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert callback(objects["trainer"], RunFigures).written == [
        run_dir / "figures" / "ratios.png",
        run_dir / "figures" / "curves.png",
    ]


def test_training_curves_axes():
    history = [(s, 0.0, 1 / (1 + s)) for s in range(0, 500, 10)]
    held = [(s, {"heldout_pairs_distortion": 2 / (1 + s)}) for s in range(10, 500, 10)]
    sigma2 = [(s, 0.9**s) for s in range(120)] + [(120, 0.0)]
    fig = training_curves(history, held, sigma2, {"gaussian best of 16": 0.5, "pca best-scaled": 0.3}, 120, "t")
    top, bottom = fig.axes
    assert top.get_yscale() == "log" and bottom.get_yscale() == "log"
    assert bottom.get_xlabel() == "optimizer steps"
    labels = [line.get_label() for line in top.lines]
    assert "learned (training)" in labels and "held-out pairs" in labels
    flat = {line.get_label(): line.get_ydata()[0] for line in top.lines if line.get_linestyle() == "--"}
    assert flat == {"gaussian best of 16": 0.5, "pca best-scaled": 0.3}
    switch = [line for line in bottom.lines if line.get_label().startswith("switch")]
    assert list(switch[0].get_xdata()) == [120, 120]
    # sigma^2 = 0 has no place on a log axis: the curve stops at the last positive value
    (curve,) = [line for line in bottom.lines if line.get_label() == "sigma^2"]
    assert max(curve.get_xdata()) == 119


def test_ratio_histogram_marks_each_maps_exact_band():
    fig = ratio_histogram(
        {"learned": np.array([0.9, 1.0, 1.1]), "gaussian": np.array([0.5, 1.5])},
        {"learned": 0.1, "gaussian": 0.5},
        "t",
        "pairs",
    )
    (ax,) = fig.axes
    verticals = sorted(round(float(line.get_xdata()[0]), 6) for line in ax.lines)
    assert verticals == [0.5, 0.9, 1.0, 1.1, 1.5]
    assert ax.get_xlabel().startswith("ratio") and ax.get_ylabel() == "fraction"


def test_ratio_sample_is_a_sample_of_the_exact_ratios():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(25, 12, generator=gen, dtype=torch.float64).numpy()
    A = torch.randn(4, 12, generator=gen, dtype=torch.float64).numpy() / 2
    # norms: every point when there are few
    ratios = ratio_sample(A, X, "norms", count=100)
    brute = ((X @ A.T) ** 2).sum(1) / (X**2).sum(1)
    np.testing.assert_allclose(ratios, brute, rtol=1e-12)
    # pairs: each sampled ratio is one of the all-pairs ratios, inside the exact [r_min, r_max]
    ratios = ratio_sample(A, X, "pairs", count=500, seed=3)
    everything = pair_ratios(A, X)[0]
    assert len(ratios) == 500
    assert np.abs(ratios[:, None] - everything[None, :]).min(1).max() < 1e-12
    report = evaluate(A, X, "pairs")
    assert report.min_ratio - 1e-12 <= ratios.min() and ratios.max() <= report.max_ratio + 1e-12


def test_sweep_plot_one_series_per_other_value_log_axes_and_the_best_starred():
    jobs = [
        {
            "params": {"optimizer.lr": lr, "model.k": k, "experiment": "x"},
            "final_distortion": eps,
            "best": (lr, k) == (0.01, 20),
        }
        for (lr, k, eps) in [
            (0.001, 10, 0.9),
            (0.01, 10, 0.5),
            (0.1, 10, 0.7),
            (0.001, 20, 0.6),
            (0.01, 20, 0.3),
            (0.1, 20, 0.4),
        ]
    ]
    fig = sweep_plot(jobs)
    lr_axis, k_axis = sorted(fig.axes, key=lambda ax: ax.get_xlabel())[::-1]
    assert lr_axis.get_xlabel() == "optimizer.lr" and lr_axis.get_xscale() == "log"
    assert k_axis.get_xlabel() == "model.k" and k_axis.get_xscale() == "linear"
    assert len(lr_axis.lines) == 2  # one series per value of model.k
    stars = [c for c in lr_axis.collections if c.get_label().startswith("best job")]
    assert stars and list(stars[0].get_offsets()[0]) == [0.01, 0.3]
    assert not [c for c in lr_axis.collections if c.get_label().startswith("not converged")]
    assert sweep_plot([{"params": {"experiment": "x"}, "final_distortion": 0.5, "best": True}]) is None
    jobs[0]["converged"] = False  # (0.001, 10): drawn with a red x of its own, and the title says so
    fig = sweep_plot(jobs)
    lr_axis = next(ax for ax in fig.axes if ax.get_xlabel() == "optimizer.lr")
    crosses = [c for c in lr_axis.collections if c.get_label().startswith("not converged")]
    assert len(crosses) == 1 and list(crosses[0].get_offsets()[0]) == [0.001, 0.9]
    assert "did not converge" in fig.texts[0].get_text()


def test_progress_log_every_tenth_and_the_bar_shows_phase_epsilon_and_sigma2(cfg_factory):
    summary, objects = train(cfg_factory(*SMALL, "trainer.max_steps=50", "logger=none"))
    lines = callback(objects["trainer"], ProgressLog).lines
    assert [line.split(" | ")[0] for line in lines] == [f"step {s}/50 ({2 * s} %)" for s in range(5, 55, 5)]
    switch = summary["switch_step"]
    last = lines[-1].split(" | ")
    assert last[1] == ("deterministic" if switch is not None and switch <= 50 else "sampler")
    # the last line's figures are the run's last: the tracker's epsilon and sigma^2 at step 50
    assert (
        last[2] == f"epsilon {summary['final_distortion']:.4g}" and last[3] == f"sigma^2 {summary['sigma2_final']:.3g}"
    )

    class Module:
        deterministic = True

        def sigma2(self):
            return 0.0

    class Trainer:
        callback_metrics = {"1_distortion/train": torch.tensor(0.25)}

    assert JLProgressBar().get_metrics(Trainer(), Module()) == {"epsilon": "0.25", "sigma^2": "0"}


def test_progress_log_shows_the_last_exact_pass_where_the_tracker_waits_for_the_end(cfg_factory):
    """At scale the tracker certifies only the last step: the lines between show the latest
    exact pass's certified epsilon, the one TensorBoard has as 1_distortion/pass."""
    import csv

    summary, objects = train(
        cfg_factory("debug=fast", "model.mode=pairs", "trainer.max_steps=40", "model.loss.active_refresh=8",
                    "callbacks.distortion_tracker.every_n_steps=40", "logger=csv", "baseline.draws=0")
    )  # fmt: skip
    lines = callback(objects["trainer"], ProgressLog).lines
    passes = {}
    for log_dir in {logger.log_dir for logger in objects["loggers"]}:
        with open(f"{log_dir}/metrics.csv") as handle:
            for row in csv.DictReader(handle):
                if row.get("1_distortion/pass"):
                    passes[int(row["step"])] = float(row["1_distortion/pass"])
    assert sorted(passes) == [8, 16, 24, 32]  # no pass at step 0, where M = 0
    for line in lines[:-1]:  # steps 4, 8, ..., 36: the latest pass before the line
        step = int(line.split(" | ")[0].split()[1].split("/")[0])
        before = [s for s in passes if s < step]  # a pass at step s runs in the step after the line "step s"
        expected = f"last exact pass: epsilon {passes[max(before)]:.4g}" if before else "epsilon -"
        assert line.split(" | ")[2] == expected, line
    assert lines[-1].split(" | ")[2] == f"epsilon {summary['final_distortion']:.4g}"


def test_progress_log_rejects_a_bad_fraction(cfg_factory):
    from jl_lightning.errors import JLInputError

    with pytest.raises(JLInputError, match="every_fraction must be a fraction in"):
        ProgressLog(every_fraction=0)


@pytest.mark.slow
def test_optuna_search_best_trial_is_its_jobs_summary(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    from conftest import jl_train
    from omegaconf import OmegaConf

    sweep = tmp_path / "search"
    proc = jl_train(
        "experiment=paper",
        "hparams_search=paper_optuna",
        "debug=fast",
        "hydra.sweeper.n_trials=3",
        # a trial of 2 steps cannot reach sigma^2 = 0: the search must not take it as its best
        "trainer.max_steps=choice(2,400)",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = OmegaConf.load(sweep / "optimization_results.yaml")
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir() and (p / ".hydra").is_dir())
    assert len(jobs) == 3
    summaries = {job.name: json.loads((job / "summary.json").read_text()) for job in jobs}
    values = {name: s["best_distortion"] for name, s in summaries.items()}  # paper_optuna's optimized_metric
    converged = {name: v for name, v in values.items() if summaries[name]["converged"]}
    assert 0 < len(converged) < 3  # both kinds of trial, and the raw best among all may be unconverged
    best_job = min(converged, key=converged.get)
    assert result.best_value == pytest.approx(values[best_job], rel=1e-12)
    overrides = OmegaConf.load(sweep / best_job / ".hydra" / "overrides.yaml")
    for name, value in result.best_params.items():
        assert f"{name}={value}" in overrides
    assert (sweep / "sweep_summary.png").read_bytes()[:4] == b"\x89PNG"
    # the summary's best is Optuna's: the lowest final epsilon among the trials that converged
    best = json.loads((sweep / "sweep_summary.json").read_text())["best"]
    assert best["job"] == best_job
    # what each trial returned to the sweeper: its epsilon, or +inf where sigma^2 never reached 0
    from jl_lightning.apps.sweep_summary import sweeper_value

    for name, summary in summaries.items():
        expected = values[name] if summary["converged"] else float("inf")
        assert sweeper_value(summary, "best_distortion") == expected


def test_the_bar_shows_phase_step_total_epsilon_and_sigma2(tmp_path):
    """An interactive run's bar (its output captured here, never shown): described by the
    phase instead of "Epoch 0", counting steps out of max_steps, with epsilon and sigma^2."""
    import contextlib
    import io

    from jl_lightning.lightning.fit import fit_from_config
    from tests.conftest import make_cfg

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        fit_from_config(
            make_cfg(
                tmp_path / "run",
                [
                    *SMALL,
                    "trainer.max_steps=100",
                    "baseline.draws=0",
                    "logger=none",
                    "model.init_variance=0.001",
                    "callbacks.deterministic_switch.threshold=0.0005",
                ],
            ),
            interactive=True,
        )
    frames = [line for line in buffer.getvalue().replace("\r", "\n").splitlines() if "/100" in line]
    assert frames[0].startswith("sampler:") and " 0/100 " in frames[0]
    assert frames[-1].startswith("deterministic:") and " 100/100 " in frames[-1]
    assert "epsilon=" in frames[-1] and "sigma^2=0" in frames[-1] and "Epoch" not in buffer.getvalue()


def test_learning_rate_temperature_and_convergence_are_in_tensorboard(tmp_path):
    """Lightning's LearningRateMonitor logs the cosine schedule (lr-Adam), the module the smooth
    max's annealed temperature, and HParams says whether sigma^2 reached 0."""
    from tests.conftest import make_cfg

    run_dir = tmp_path / "run"
    summary, _ = train(
        make_cfg(
            run_dir,
            [
                "debug=fast",
                "model.mode=pairs",
                "trainer.max_steps=60",
                "log_every=10",
                "logger=tensorboard",
                "baseline.draws=0",
            ],
        )
    )
    acc = events(run_dir)
    lr = {e.step: e.value for e in acc.Scalars("lr-Adam")}
    steps = sorted(lr)  # at the start of steps 9, 19, ...: the rate that step uses
    assert len(lr) >= 5
    assert all(lr[a] > lr[b] for a, b in zip(steps, steps[1:]))  # the cosine decays
    peak = summary["auto_settings"]["chosen"]["optimizer.lr"]  # auto: 0.05 for 60 steps of pairs (core/plan.py)
    assert peak == 0.05
    expected = {s: peak * (1 + math.cos(math.pi * s / 60)) / 2 for s in steps}  # scheduler: cosine to 0 at the end
    assert lr == pytest.approx(expected, rel=1e-5)
    temperature = {e.step: e.value for e in acc.Scalars("train/temperature")}
    assert temperature[0] == pytest.approx(0.1)  # "auto": 0.1 in pairs mode, annealed geometrically to 1e-4
    assert temperature[50] == pytest.approx(0.1 * (1e-4 / 0.1) ** (50 / 60), rel=1e-5)
    converged = acc.Scalars("hp/converged")[-1]
    # every exact pass of the active set certifies M: at step 50 the tracker's figure, by another path
    passes = {e.step: e.value for e in acc.Scalars("1_distortion/pass")}
    tracked = {e.step: e.value for e in acc.Scalars("1_distortion/train")}
    # auto: a pass every 10 steps for 60 steps of few pairs, none at step 0 where M = 0 (core/plan.py)
    assert sorted(passes) == [10, 20, 30, 40, 50]
    # the same M certified twice: the pass over the loss's float32 centered points, the tracker
    # over the data's float64 points, so they agree to float32 rounding of the points
    assert passes[50] == pytest.approx(tracked[50], rel=1e-6)
    assert converged.value == (1.0 if summary["converged"] else 0.0)  # 60 steps: either, by the rounding of the threads


@pytest.mark.slow
def test_the_final_line_is_in_train_log_too(tmp_path):
    from conftest import jl_train

    proc = jl_train("debug=fast", "logger=none", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    last = (tmp_path / "run" / "train.log").read_text().strip().splitlines()[-1]
    assert "[jl] NOT CONVERGED: sigma^2 = " in last and last.endswith(f"run folder {tmp_path / 'run'}")
    assert last.split("] ", 2)[-1] in proc.stdout  # the console's line, word for word


def test_figures_of_a_run_certified_once_and_of_maps_worse_than_epsilon_one():
    """A run certified only at its last step is a visible point; a flat epsilon keeps linear
    ticks; sigma^2's last positive value is marked where the switch set it to 0; a ratio axis
    never runs below 0, though 1 - epsilon does for epsilon > 1."""
    fig = training_curves(
        [(7000, 0.0, 0.41)], [], [(s, 0.9**s) for s in range(50)] + [(50, 0.0)], {"gaussian best of 20": 1.7}, 50, "t"
    )
    top, bottom = fig.axes
    (learned,) = [line for line in top.lines if line.get_label() == "learned (training)"]
    assert learned.get_marker() == "o" and list(learned.get_xdata()) == [7000]
    assert top.get_yscale() == "linear" and len(top.get_yticks()) > 2
    (mark,) = [
        line for line in bottom.lines if line.get_label().startswith("sigma^2 ") and "then 0" in line.get_label()
    ]
    assert list(mark.get_xdata()) == [49] and mark.get_ydata()[0] == pytest.approx(0.9**49)
    fig = ratio_histogram({"gaussian": np.array([0.2, 2.5])}, {"gaussian": 1.5}, "t", "pairs")
    (ax,) = fig.axes
    assert ax.get_xlim()[0] >= -0.2 and min(float(line.get_xdata()[0]) for line in ax.lines) >= 0


def test_the_sweep_plot_shows_held_out_epsilon_beside_the_ranked_one():
    jobs = [
        {"params": {"model.k": k}, "best_distortion": eps, "heldout": held, "best": k == 16}
        for k, eps, held in [(8, 0.5, 0.9), (16, 0.4, 0.6), (32, 0.3, 0.5)]
    ]
    fig = sweep_plot(jobs, "best_distortion")
    (ax,) = fig.axes
    (squares,) = [c for c in ax.collections if c.get_label().startswith("held-out")]
    assert [list(p) for p in squares.get_offsets()] == [[8, 0.9], [16, 0.6], [32, 0.5]]
    assert fig.texts[0].get_text().startswith("sweep: best distortion")
    fig = sweep_plot([dict(j, heldout=None) for j in jobs], "best_distortion")
    assert not [c for c in fig.axes[0].collections if c.get_label().startswith("held-out")]


def test_a_log_line_during_the_bar_is_printed_above_it_not_into_it(monkeypatch):
    """While the bar is on screen, the console handler writes through tqdm.write: the bar is
    cleared ("\\r" and blanks) before the line, so the line starts a line of its own."""
    import io
    import logging

    from tqdm import tqdm

    from jl_lightning.lightning.callbacks.progress import _AboveTheBar

    screen = io.StringIO()
    handler = logging.StreamHandler(screen)
    logger = logging.getLogger("jl_lightning.test_bar")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        bar = tqdm(total=10, file=screen, desc="sampler", mininterval=0, ascii=True)
        bar.update(2)
        previous = handler.setStream(_AboveTheBar(screen))
        logger.warning("switch to the mean at step 148")
        handler.setStream(previous)
        bar.close()
    finally:
        logger.removeHandler(handler)
    text = screen.getvalue()
    before = text[: text.index("switch to the mean")]
    assert before.rstrip(" ").endswith("\r")  # the bar's line was cleared first
    after = text[text.index("switch to the mean") :]
    assert after.startswith("switch to the mean at step 148\n") and "sampler" in after  # the bar again, below


def test_no_phase_is_silent_a_progress_line_when_the_log_has_been_quiet(cfg_factory, monkeypatch):
    """Besides every tenth of the run, a progress line comes whenever the run's log has been
    quiet for QUIET_S (25 s; 0 here, so every step speaks), and a heartbeat counts any line of
    the log, not only its own phase's."""
    import logging
    import time

    from jl_lightning.lightning.callbacks import progress
    from jl_lightning.metrics import heartbeat

    monkeypatch.setattr(progress, "QUIET_S", 0.0)
    _, objects = train(cfg_factory(*SMALL, "trainer.max_steps=20", "logger=none"))
    lines = callback(objects["trainer"], ProgressLog).lines
    assert [int(line.split()[1].split("/")[0]) for line in lines] == list(range(1, 21))

    beat = heartbeat.Heartbeat("phase", 100, every_s=0.2)
    time.sleep(0.25)
    logging.getLogger("jl_lightning").warning("another phase's line")  # the log was not quiet
    beat.tick(10)
    assert beat.lines == [] and heartbeat.last_line_time() > beat.began
    time.sleep(0.25)
    beat.tick(20)
    assert len(beat.lines) == 1 and beat.lines[0].startswith("phase: 20 % (20 of 100 tiles)")
    # a phase that begins after a quiet stretch speaks at once: silence is the log's, not the phase's
    time.sleep(0.25)
    young = heartbeat.Heartbeat("next phase", 10, every_s=0.2)
    young.tick(1)
    assert len(young.lines) == 1 and young.lines[0].startswith("next phase: 10 %")


def test_recall_reports_its_progress_map_by_map_when_the_log_is_quiet(monkeypatch, caplog):
    """At 10^5 points recall@K takes seconds a map: with the log quiet (as after the last
    step), each map measured is a progress line, and the figures are those of recall_at_k."""
    import logging

    from jl_lightning.lightning.callbacks.recall import RecallAtK
    from jl_lightning.metrics import heartbeat, neighbors
    from jl_lightning.metrics.neighbors import recall_at_k

    monkeypatch.setattr(heartbeat, "last_line_time", lambda: -1e9)  # quiet since long ago
    rng = np.random.default_rng(0)
    points = rng.standard_normal((200, 12))
    learned, other = rng.standard_normal((4, 12)), rng.standard_normal((4, 12))
    with caplog.at_level(logging.INFO, logger="jl_lightning"):
        figures = RecallAtK(k=5, queries=50).measure(learned, points, {"gaussian": other})
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("recall@5 of 50 queries")]
    assert [line.split(": ")[1].split(" (")[0] for line in lines] == ["33 %", "67 %", "100 %"]  # 1 tile a map
    assert figures["learned"] == recall_at_k(learned, points, 5, 50, 0)
    assert figures["gaussian"] == recall_at_k(other, points, 5, 50, 0)
    # tile by tile: with tiles of 64 points, 4 a map, 12 lines, the last at 100 %
    caplog.clear()
    monkeypatch.setattr(neighbors, "TILE_ROWS", 64)
    with caplog.at_level(logging.INFO, logger="jl_lightning"):
        again = RecallAtK(k=5, queries=50).measure(learned, points, {"gaussian": other})
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("recall@5 of 50 queries")]
    assert len(lines) == 12 and "(12 of 12 tiles)" in lines[-1] and again == figures


@pytest.mark.slow
def test_the_duplicate_rows_warning_shows_once_on_the_terminal_and_in_train_log(tmp_path):
    from conftest import jl_train

    X = np.random.default_rng(0).standard_normal((40, 6))
    X[5] = X[3]
    np.save(tmp_path / "dups.npy", X)
    run = tmp_path / "run"
    proc = jl_train(
        "debug=fast", "logger=none", "data=file", f"data.source.path={tmp_path / 'dups.npy'}", "model.mode=pairs",
        "model.k=3", f"hydra.run.dir={run}", cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    terminal = proc.stdout + proc.stderr
    assert terminal.count("1 duplicate row(s), 1 pair(s) at distance 0") == 1, terminal
    assert (run / "train.log").read_text().count("1 duplicate row(s), 1 pair(s) at distance 0") == 1


def test_a_run_shorter_than_the_logging_interval_gets_no_lightning_warning(cfg_factory):
    """Every scalar goes to the loggers on the run's own schedule (log_schedule.py), so
    Lightning's advice to lower log_every_n_steps when a run has fewer steps than it does
    not apply, and a 5-step run prints nothing of it."""
    import warnings

    cfg = cfg_factory(*SMALL, "trainer.max_steps=5", "log_every=50", "logger=tensorboard")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary, _ = train(cfg)
    assert summary["steps"] == 5
    assert not [w for w in caught if "logging interval" in str(w.message)], [str(w.message) for w in caught]
