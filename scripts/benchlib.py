"""What every benchmark script shares: the machine line and the append to docs/benchmarks.md."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
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
    return (f"- machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{threads} torch thread(s), Python {platform.python_version()}")


def append_to_benchmarks(text: str) -> Path:
    """Append a section (with its command, machine and date) to docs/benchmarks.md."""
    BENCHMARKS.parent.mkdir(exist_ok=True)
    if not BENCHMARKS.exists():
        BENCHMARKS.write_text("# Benchmarks\n\nEvery figure with its command, machine and date.\n\n")
    with BENCHMARKS.open("a") as handle:
        handle.write(text + "\n")
    return BENCHMARKS


def report(lines: list[str], write: bool) -> None:
    """Print a section and, unless told not to, append it to docs/benchmarks.md."""
    text = "\n".join(lines)
    print(text)
    if write:
        print(f"appended to {append_to_benchmarks(text)}")


def recipe_arguments(description: str, recipes: dict, default_recipes: list[str], default_seeds: list[int]):
    """The command line every jl-train benchmark shares: recipes, seeds, --no-write, extra overrides."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--recipes", nargs="+", default=default_recipes, choices=list(recipes))
    parser.add_argument("--seeds", nargs="+", type=int, default=default_seeds)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("extra", nargs="*", help="extra jl-train overrides, e.g. threads=1")
    return parser.parse_args()


def run_jl_train(recipe: str, overrides: list[str], seed: int, stamp: str, extra: list[str]) -> dict:
    """One real ``jl-train`` process (imports included) into outputs/bench/STAMP/RECIPE-seedS;
    its summary.json plus ``recipe``, ``seed`` and ``wall`` (seconds, start to exit)."""
    run_dir = ROOT / "outputs" / "bench" / stamp / f"{recipe}-seed{seed}"
    exe = shutil.which("jl-train")
    cmd = ([exe] if exe else [sys.executable, "-m", "jl_lightning.train"]) + overrides + [
        f"seed={seed}", f"hydra.run.dir={run_dir}", *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"recipe": recipe, "seed": seed, "wall": wall, **summary}


def stamp_now() -> str:
    return dt.datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
