"""The instantiation allowlist: a command line or a run folder names only classes the project
allows; anything else is refused in one line before anything is built or written."""

from __future__ import annotations

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from jl_lightning.apps.config import compose
from jl_lightning.errors import JLInputError
from jl_lightning.lightning.targets import allowed, check_override_targets, check_targets, declared_targets
from tests.conftest import concurrently, jl_train


def test_the_allowlist_is_the_declared_targets_and_lightning_and_torch_classes():
    assert "jl_lightning.lightning.sampler.GaussianSampler" in declared_targets()
    assert "lightning.pytorch.Trainer" in declared_targets()
    for target in ("torch.optim.AdamW", "torch.optim.lr_scheduler.StepLR", "lightning.pytorch.callbacks.EarlyStopping"):
        assert allowed(target)
    refused = ["builtins.open", "shutil.copyfile", "os.system", "torch.save", "jl_lightning.io.run_folder.atomic_write",
               "lightning.pytorch.callbacks.ModelCheckpoint.save_checkpoint", "hydra_plugins.x.Launcher"]  # fmt: skip
    for target in refused:
        assert not allowed(target), target
    assert allowed("hydra_plugins.x.Launcher", hydra_node=True)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["experiment=digits_pairs"],
        ["experiment=paper"],
        ["experiment=exact_small"],
        ["experiment=theorem1_trap"],
        ["experiment=clusters_1e6"],
        ["trainer=ddp"],
        ["logger=tensorboard_csv"],
        ["optimizer=sgd"],
    ],  # fmt: skip
)
def test_every_packaged_config_passes(overrides):
    check_targets(compose(overrides))


def test_a_crafted_target_is_refused_naming_its_key():
    cfg = compose([])
    OmegaConf.update(cfg, "callbacks.run_summary", {"_target_": "builtins.open", "file": "x", "mode": "w"}, merge=False)
    with pytest.raises(JLInputError, match=r"callbacks.run_summary._target_='builtins.open' is not a class"):
        check_targets(cfg)
    OmegaConf.update(cfg, "callbacks.run_summary", {"_target_": "${oc.env:HOME}"}, merge=False)
    with pytest.raises(JLInputError, match="is not a class"):  # interpolations are not resolved to decide
        check_targets(cfg)
    with pytest.raises(JLInputError, match="hydra.callbacks.x._target_='shutil.copyfile'"):
        check_override_targets(["hydra.callbacks.x._target_=shutil.copyfile"])
    with pytest.raises(JLInputError, match="a _target_ given inside a value"):
        check_override_targets(["callbacks.x={_target_:builtins.open}"])
    check_override_targets(["+optimizer._target_=torch.optim.AdamW", "model.k=3"])


@pytest.mark.slow
def test_a_command_line_or_a_run_folder_cannot_run_code(tmp_path):
    """A +callbacks.x._target_=builtins.open override, and a killed run's folder whose config
    names builtins.open, resumed and compared: each one line on stderr, exit 2, no file made,
    no run folder left."""
    pwned = tmp_path / "pwned.txt"
    base = ["trainer.max_steps=3", "model.n_samples=2", "baseline.draws=0", "logger=none", "data.source.n=12"]
    folder = tmp_path / "crafted"
    inline, made = concurrently(
        lambda: jl_train(
            *base,
            "+callbacks.x._target_=builtins.open",
            f"+callbacks.x.file={pwned}",
            "+callbacks.x.mode=w",
            f"hydra.run.dir={tmp_path / 'r1'}",
            cwd=tmp_path,
        ),  # fmt: skip
        lambda: jl_train(*base, f"hydra.run.dir={folder}", cwd=tmp_path),
    )
    assert inline.returncode == 2 and "callbacks.x._target_='builtins.open'" in inline.stderr
    assert len(inline.stderr.strip().splitlines()) == 1 and not (tmp_path / "r1").exists()
    assert made.returncode == 0, made.stderr
    config = OmegaConf.load(folder / ".hydra" / "config.yaml")
    config.callbacks.run_summary = {"_target_": "builtins.open", "file": str(pwned), "mode": "w"}
    OmegaConf.save(config, folder / ".hydra" / "config.yaml")
    compare = subprocess.run(
        [sys.executable, "-m", "jl_lightning.apps.compare", f"compare.run={folder}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (folder / "summary.json").unlink()  # as a killed run leaves it: resumable
    (folder / "embedding.npy").unlink()
    resumed = jl_train(f"resume={folder}", cwd=tmp_path)
    for result in (resumed, compare):
        assert result.returncode == 2 and "callbacks.run_summary._target_='builtins.open'" in result.stderr
    assert not pwned.exists()


def test_a_users_own_classes_are_allowed_by_the_environment_not_by_the_config(monkeypatch):
    assert not allowed("mypackage.callbacks.Watch")
    monkeypatch.setenv("JL_EXTRA_TARGETS", "mypackage.callbacks., other.Thing")
    assert allowed("mypackage.callbacks.Watch") and allowed("other.Thing")
    assert not allowed("mypackage.callbacks.write_file")  # classes only
    assert not allowed("builtins.open")


def test_a_run_folders_config_must_have_jl_trains_shape():
    from jl_lightning.apps.config import check_run_config

    saved = OmegaConf.create(OmegaConf.to_container(compose(["model.k=4"])))
    check_run_config(saved, "resume=R")  # what jl-train writes passes
    for change, message in (
        ({"evil": 1}, "holds evil, which jl-train does not write"),
        ({"model": "x"}, "model must be a mapping of options"),
        ({"callbacks": {"x": {"_target_": "builtins.open"}}}, "builtins.open"),
    ):
        crafted = OmegaConf.merge(saved, change) if "evil" not in change else OmegaConf.create({**saved, **change})
        with pytest.raises(JLInputError, match=message):
            check_run_config(crafted, "resume=R")
    with pytest.raises(JLInputError, match="not a jl-train config"):
        check_run_config(OmegaConf.create([1, 2]), "resume=R")
