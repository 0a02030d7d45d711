"""What every benchmark script shares: the machine line, the jl-train runner, and the
rewrite of the script's own section of docs/benchmarks.md.

Each script owns one section, delimited by ``<!-- bench:NAME -->`` and ``<!-- /bench:NAME -->``;
a run replaces that section (its table, command, machine and date) and leaves the others.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "docs" / "benchmarks.md"


def machine_line(threads: int | None = None) -> str:
    threads = torch.get_num_threads() if threads is None else threads
    return (
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{threads} torch thread(s), Python {platform.python_version()}"
    )


def default_loss(mode: str, n: int, d: int, k: int, steps: int, **overrides) -> dict:
    """The loss options jl-train's defaults give a fit of this size: conf/model's ``loss``
    with ``overrides`` on top and every ``auto`` left resolved as a fit resolves it
    (core/plan.py), for scripts that build a sampler without the Trainer."""
    from omegaconf import OmegaConf

    from jl_lightning.apps.config import compose
    from jl_lightning.core import plan

    values = {**OmegaConf.to_container(compose().model.loss), **overrides}
    return plan.resolve(values, plan.choose(mode=mode, n=n, d=d, k=k, steps=steps))[0]


def write_section(name: str, text: str, path: Path = BENCHMARKS) -> Path:
    """Replace section ``name`` of docs/benchmarks.md with ``text`` (appended if it is new)."""
    path.parent.mkdir(exist_ok=True)
    current = (
        path.read_text() if path.exists() else "# Benchmarks\n\nEvery figure with its command, machine and date.\n"
    )
    block = f"<!-- bench:{name} -->\n{text.rstrip()}\n<!-- /bench:{name} -->"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    if pattern.search(current):
        current = pattern.sub(lambda _: block, current)
    else:
        current = current.rstrip() + "\n\n" + block + "\n"
    path.write_text(current)
    return path


def report(name: str, lines: list[str], write: bool) -> None:
    """Print a section and, unless told not to, rewrite section ``name`` of docs/benchmarks.md."""
    text = "\n".join(lines)
    print(text)
    if write:
        print(f"rewrote section {name!r} of {write_section(name, text)}")


def recipe_arguments(description: str, recipes: dict, default_recipes: list[str], default_seeds: list[int]):
    """The command line every jl-train benchmark shares: recipes, seeds, --no-write, extra overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--recipes", nargs="+", default=default_recipes, choices=list(recipes))
    parser.add_argument("--seeds", nargs="+", type=int, default=default_seeds)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("extra", nargs="*", help="extra jl-train overrides, e.g. threads=1")
    return parser.parse_args()


ENTRY_MODULES = {
    "jl-train": "jl_lightning.apps.train",
    "jl-compare": "jl_lightning.apps.compare",
    "jl-embed": "jl_lightning.apps.embed",
}


def entry_command(entry: str) -> list[str]:
    """The console script ``entry`` as installed, or its module under this Python."""
    exe = shutil.which(entry)
    return [exe] if exe else [sys.executable, "-m", ENTRY_MODULES[entry]]


def run_jl_train(recipe: str, overrides: list[str], seed: int, stamp: str, extra: list[str]) -> dict:
    """One real ``jl-train`` process (imports included) into outputs/bench/STAMP/RECIPE-seedS;
    its summary.json plus ``recipe``, ``seed`` and ``wall`` (seconds, start to exit)."""
    run_dir = ROOT / "outputs" / "bench" / stamp / f"{recipe}-seed{seed}"
    cmd = entry_command("jl-train") + overrides + [f"seed={seed}", f"hydra.run.dir={run_dir}", *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"recipe": recipe, "seed": seed, "wall": wall, **summary}


def stamp_now() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
