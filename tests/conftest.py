"""Shared fixtures: a composed jl-train config writing into a temporary run folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from jl_lightning.apps.config import CONFIG_DIR

ROOT = Path(__file__).resolve().parent.parent

# Tests measure behaviour, not speed: one thread keeps them steady on a loaded 2-core box.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def make_cfg(run_dir: Path, overrides: list[str]):
    """Compose conf/train.yaml with ``overrides`` as jl-train would, outside a Hydra run."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
    return cfg


def jl_train(*args: str, cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    """The real ``jl-train`` entry in a subprocess, as a user runs it (one torch thread), with
    ``env_extra`` added to its environment. Every test file runs it through this one function."""
    exe = shutil.which("jl-train")
    cmd = [exe] if exe else [sys.executable, "-m", "jl_lightning.apps.train"]
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env_extra or {}))
    return subprocess.run(cmd + list(args), cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


def concurrently(first, *others):
    """The results of the calls (functions of no argument, such as independent ``jl_train``
    runs), run at the same time: on two cores, two subprocesses that mostly import and compose
    take about the wall time of one. ``first`` runs in the calling thread, so it may be an
    in-process fit (Lightning installs signal handlers only from the main thread)."""
    with ThreadPoolExecutor(max_workers=max(1, len(others))) as pool:
        futures = [pool.submit(call) for call in others]
        return [first(), *(future.result() for future in futures)]


@pytest.fixture
def cfg_factory(tmp_path):
    counter = iter(range(1000))

    def factory(*overrides: str):
        return make_cfg(tmp_path / f"run{next(counter)}", list(overrides))

    return factory


@pytest.fixture(autouse=True)
def _quiet_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        yield
