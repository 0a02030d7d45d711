"""Each config group and option does what conf/ and the README say."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from jl_lightning.apps.train import train
from jl_lightning.io.sources import GaussianPoints
from jl_lightning.io.validation import validate_points
from jl_lightning.lightning.fit import resolve_auto
from tests.helpers import default_loss, loss_node

TINY = [
    "data.source.n=20",
    "data.source.d=30",
    "model.k=5",
    "model.n_samples=4",
    "trainer.max_steps=30",
    "baseline.draws=5",
    "log_every=10",
    "callbacks.model_checkpoint.every_n_train_steps=10",
]


@pytest.mark.parametrize("name, n, accelerator", [("clusters_1e5", 125_000, "cpu"), ("clusters_1e6", 1_250_000, "gpu")])
def test_experiments_at_scale_compose_with_a_held_out_split(cfg_factory, name, n, accelerator):
    cfg = cfg_factory(f"experiment={name}")
    assert cfg.data.source._target_.endswith("ClustersPoints") and cfg.data.source.n == n
    assert cfg.data.val_fraction == 0.2 and cfg.data.source.cache_dir == "outputs/data"
    assert (cfg.model.mode, cfg.model.loss.pair_strategy, cfg.model.k) == ("pairs", "active", 32)
    assert cfg.trainer.accelerator == accelerator
    # the defaults' plan for this size: 10 exact passes (none at M = 0), the last one late in
    # the run, candidate rescans between them (docs/scale.md: where the passes go)
    resolved, settings = resolve_auto(cfg, n=int(0.8 * n), dim=384)
    assert settings["regime"] == "many_pairs"
    m = resolved.model.loss
    loss = default_loss(
        mode="pairs",
        active_refresh=m.active_refresh,
        active_refresh_growth=m.active_refresh_growth,
        active_refresh_extra=list(m.active_refresh_extra),
    )
    loss.refreshed = True
    passes = [step for step in range(1, cfg.trainer.max_steps) if loss.needs_refresh(step)]
    assert len(passes) == 10 and passes[0] == 200 and 6000 <= passes[-1] < cfg.trainer.max_steps
    assert (m.active_candidates, m.active_rescan, resolved.optimizer.lr) == (2**21, 20, 0.005)
    assert (cfg.baseline.draws, list(cfg.baseline.methods)) == (20, ["gaussian", "pca"])


def test_experiment_paper_is_appendix_b(cfg_factory):
    cfg = cfg_factory("experiment=paper")
    assert (cfg.data.source.n, cfg.data.source.d, cfg.model.mode) == (100, 500, "norms")
    assert cfg.data.normalize == "auto"  # unit norm in norms mode
    assert (cfg.model.k, cfg.model.n_samples, cfg.model.variance) == (30, 20, "raw")
    assert (cfg.model.init_variance, cfg.model.init_mean, cfg.model.reg_weight) == (1.0, "zeros", 1.0)
    assert cfg.optimizer._target_ == "torch.optim.Adam" and cfg.optimizer.lr == 0.01
    assert not cfg.scheduler  # constant learning rate
    assert cfg.trainer.max_steps == 5000
    assert cfg.callbacks.deterministic_switch.threshold == 0.0
    assert cfg.baseline.draws == 1000


def test_default_recipe_differs_from_the_paper_only_where_documented(cfg_factory):
    cfg = cfg_factory()
    cfg, _ = resolve_auto(cfg, n=100, dim=500)  # the defaults' auto values, as a fit resolves them
    assert cfg.scheduler._target_.endswith("CosineAnnealingLR") and cfg.scheduler.T_max == 5000
    assert cfg.callbacks.deterministic_switch.threshold == 1e-4
    assert (cfg.model.k, cfg.model.n_samples, cfg.optimizer.lr, cfg.trainer.max_steps) == (30, 20, 0.01, 5000)


def test_threads_option_sets_torch_threads(cfg_factory):
    before = torch.get_num_threads()
    try:
        summary, _ = train(cfg_factory(*TINY, "threads=1", "logger=none"))
        assert summary["torch_threads"] == 1
        # the run records its machine, so a report written on another one names it
        assert summary["host"]["cpus"] == os.cpu_count() and summary["device"] == "cpu"
    finally:
        torch.set_num_threads(before)


def test_sgd_optimizer_and_constant_scheduler(cfg_factory):
    _, objects = train(cfg_factory(*TINY, "optimizer=sgd", "scheduler=constant", "logger=none"))
    trainer = objects["trainer"]
    assert [type(o) for o in trainer.optimizers] == [torch.optim.SGD]
    assert trainer.lr_scheduler_configs == []


def test_tensorboard_and_csv_loggers_together(cfg_factory):
    summary, _ = train(cfg_factory(*TINY, "logger=tensorboard_csv"))
    run = Path(summary["run_dir"])
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "csv" / "metrics.csv").is_file()


def test_callbacks_none_still_reports_the_final_distortion(cfg_factory):
    summary, _ = train(cfg_factory(*TINY[:-1], "callbacks=none", "logger=none"))
    assert summary["switch_step"] is None and summary["sigma2_crossings"] is None
    assert not (Path(summary["run_dir"]) / "checkpoints").exists()
    # the reported figure is the exported matrix's, recomputed here by brute force
    A = np.load(Path(summary["run_dir"]) / "embedding.npy")
    X = validate_points(GaussianPoints(n=20, d=30, seed=0).load(), "synthetic")
    ratios = ((X @ A.T) ** 2).sum(1) / (X**2).sum(1)
    assert summary["final_distortion"] == pytest.approx(np.abs(ratios - 1).max(), rel=1e-9)


def test_debug_fast_is_tiny(cfg_factory):
    summary, _ = train(cfg_factory("debug=fast", "logger=none"))
    assert (summary["n"], summary["d"], summary["k"], summary["steps"]) == (20, 40, 8, 20)


def test_data_file_trains_on_the_file(cfg_factory, tmp_path):
    points = np.random.default_rng(0).standard_normal((25, 12))
    np.save(tmp_path / "mine.npy", points)
    summary, _ = train(
        cfg_factory(
            "data=file",
            f"data.source.path={tmp_path / 'mine.npy'}",
            "model.k=4",
            "trainer.max_steps=30",
            "baseline.draws=5",
            "logger=none",
            "log_every=10",
            "callbacks.model_checkpoint.every_n_train_steps=10",
        )
    )
    assert (summary["n"], summary["d"]) == (25, 12)
    assert np.load(Path(summary["run_dir"]) / "embedding.npy").shape == (4, 12)


def test_progress_bar_only_on_interactive_runs(cfg_factory):
    from lightning.pytorch.callbacks import TQDMProgressBar

    from jl_lightning.lightning.fit import fit_from_config

    bars = []
    for interactive in (False, True):
        result = fit_from_config(cfg_factory(*TINY, "logger=none"), interactive=interactive)
        bars.append(any(isinstance(c, TQDMProgressBar) for c in result.objects["trainer"].callbacks))
    assert bars == [False, True]


NO_DATA_PLAN = {"n_samples": 20, "subspace_penalty": 0.0, "every_n_steps": 50}


def _yaml_defaults_differ_from_code(node, target) -> dict:
    """{parameter: (YAML value, code default)} where a config file sets a parameter that the
    class (its ``__init__`` and every base class's) or function ``target`` gives another default."""
    import inspect

    callables = (
        [
            c.__init__
            for c in inspect.getmro(target)
            if "__init__" in vars(c) and not c.__module__.startswith(("lightning", "torch", "builtins"))
        ]
        if inspect.isclass(target)
        else [target]
    )  # a Lightning base class's defaults are Lightning's
    out = {}
    for function in callables:
        params = inspect.signature(function).parameters
        for name, value in node.items():
            if name.startswith("_") or name not in params or params[name].default is inspect.Parameter.empty:
                continue
            code = params[name].default
            if isinstance(code, tuple):
                code = list(code)
            if value == "auto" and name in NO_DATA_PLAN:
                # chosen at the start of a fit (core/plan.py); the code's default is the choice
                # without data in view (norms mode), so that both still state one value
                value = NO_DATA_PLAN[name]
            if value != code:
                out[f"{function.__qualname__}({name})"] = (value, code)
    return out


def _group_nodes(cfg_factory) -> dict:
    """Every config file of the model, data and callbacks groups, composed into the default
    config and resolved, by where it comes from."""
    from omegaconf import OmegaConf

    from jl_lightning.apps.config import CONFIG_DIR

    nodes = {}
    for model in ("sampler", "exact"):
        nodes[f"model={model}"] = OmegaConf.to_container(cfg_factory(f"model={model}").model, resolve=True)
    for path in sorted(Path(CONFIG_DIR, "data").glob("*.yaml")):
        # common is a base and file needs a path; a preset of another data config (clusters_1e5
        # of clusters) states its own choices, not defaults
        based_on = OmegaConf.load(path).get("defaults", [])
        if path.stem in ("common", "file") or any(b not in ("common", "_self_") for b in based_on):
            continue
        data = OmegaConf.to_container(cfg_factory(f"data={path.stem}").data, resolve=True)
        nodes[f"data={path.stem}"], nodes[f"data={path.stem} source"] = data, data["source"]
    callbacks = OmegaConf.to_container(cfg_factory().callbacks, resolve=True)
    for name, node in callbacks.items():
        nodes[f"callbacks.{name}"] = node
    return {where: node for where, node in nodes.items() if str(node.get("_target_", "")).startswith("jl_lightning")}


def test_yaml_is_the_one_source_of_defaults(cfg_factory):
    """Each config file and the class it builds (with its base classes) agree on every default
    they both state, for every model, data, source and callback config; the loss's factory
    states none (the sampler passes the YAML's by name); and instantiating the default config
    equals constructing the class from code."""
    import inspect

    from hydra.utils import get_class, instantiate

    from jl_lightning.core.losses import make_loss

    nodes = _group_nodes(cfg_factory)
    assert {"model=sampler", "model=exact", "data=digits source", "callbacks.reference_lines"} <= set(nodes)
    mismatches = {
        where: diff
        for where, node in nodes.items()
        if (diff := _yaml_defaults_differ_from_code(node, get_class(node["_target_"])))
    }
    assert mismatches == {}
    assert all(
        p.default is inspect.Parameter.empty and p.kind is p.KEYWORD_ONLY
        for p in inspect.signature(make_loss).parameters.values()
    )
    # the default model, built both ways, has the same hyperparameters
    from jl_lightning.core.plan import choose
    from jl_lightning.lightning.fit import resolve_auto
    from jl_lightning.lightning.sampler import GaussianSampler

    plan = choose(mode="norms", n=1000, d=500, k=30, steps=5000)
    assert {name: getattr(plan, name) for name in ("n_samples", "subspace_penalty")} == {
        name: NO_DATA_PLAN[name] for name in ("n_samples", "subspace_penalty")
    }
    resolved, _ = resolve_auto(cfg_factory(), n=1000, dim=500)
    from_yaml = instantiate(resolved.model, dim=500)
    from_code = GaussianSampler(k=30, dim=500, loss=loss_node(plan_for=("norms", 1000, 5000)))
    assert dict(from_yaml.hparams) == dict(from_code.hparams)
    torch.testing.assert_close(from_yaml.mean, from_code.mean)


def test_the_defaults_check_catches_a_changed_default():
    """The check above fails where code and YAML disagree (here a made-up class)."""

    class Base:
        def __init__(self, k: int = 30):
            pass

    class Child(Base):
        def __init__(self, k: int = 30, draws: int = 1000):
            super().__init__(k)

    assert _yaml_defaults_differ_from_code({"k": 30, "draws": 1000}, Child) == {}
    assert _yaml_defaults_differ_from_code({"k": 31, "draws": 1000}, Child) == {
        f"{Child.__init__.__qualname__}(k)": (31, 30),
        f"{Base.__init__.__qualname__}(k)": (31, 30),
    }


def test_the_default_trainer_uses_the_no_op_profiler_and_simple_still_profiles(cfg_factory):
    from hydra.utils import instantiate
    from lightning.pytorch.profilers import PassThroughProfiler, SimpleProfiler

    from jl_lightning.lightning.fit import resolve_auto
    from jl_lightning.lightning.profiler import NullProfiler

    def trainer_of(*overrides):  # as a fit builds it: after the auto settings (the epoch's length)
        resolved, _ = resolve_auto(cfg_factory(*overrides), n=20, dim=50)
        return instantiate(resolved.trainer, logger=False, enable_progress_bar=False)

    trainer = trainer_of()
    assert isinstance(trainer.profiler, NullProfiler) and isinstance(trainer.profiler, PassThroughProfiler)
    profiling = trainer_of("trainer.profiler=simple")
    assert isinstance(profiling.profiler, SimpleProfiler)
    lightnings = trainer_of("trainer.profiler=null")
    assert type(lightnings.profiler) is PassThroughProfiler
    entered = []
    for _ in range(2):  # one shared object, reusable
        with trainer.profiler.profile("training_step"):
            entered.append(True)
    assert entered == [True, True]
