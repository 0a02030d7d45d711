"""What every benchmark script shares: the machine line and the append to docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
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
