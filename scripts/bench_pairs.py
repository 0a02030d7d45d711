"""Pairs mode on digits: the exact step against the difference-vector form, and the
pair strategies and max variants compared by epsilon reached per second of wall time.

    python scripts/bench_pairs.py                      # step timing + 3 strategies, 2000 steps each
    python scripts/bench_pairs.py --steps 5000 --threads 2
    python scripts/bench_pairs.py --only step

Part 1 times one exact all-pairs training step (forward and backward, N = 20 samples,
k = 16) on the 1797 digits (1.6 M pairs) two ways: the module's embedded-space loss
(norms and Gram blocks of Y = X A^T, tiled, gradient through each sample's worst pair)
and the difference-vector form (every x_i - x_j formed, A applied to each, autograd
through the max), one sample at a time so memory stays at a few hundred MB.

Part 2 trains ``experiment=digits_pairs`` with (exact, hard max), (active, hard max)
and (active, annealed log-sum-exp) and reports the exact all-pairs epsilon of M against
the seconds of training (DistortionTracker's history). Results replace their section of
docs/benchmarks.md with the command, machine and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
import time

import torch
from benchlib import default_loss, machine_line, report

VARIANTS = {
    "exact, hard max": ["model.loss.pair_strategy=exact", "model.loss.smooth_temperature=null"],
    "active, hard max": ["model.loss.pair_strategy=active", "model.loss.smooth_temperature=null"],
    "active, smooth max": ["model.loss.pair_strategy=active"],
}


def digits() -> torch.Tensor:
    from sklearn.datasets import load_digits

    return torch.tensor(load_digits().data, dtype=torch.float32)


def time_exact_step(repeats: int) -> tuple[float, float]:
    """(embedded-space seconds, difference-vector seconds) for one forward+backward step."""

    from jl_lightning.lightning.sampler import GaussianSampler

    X = digits()
    loss = default_loss("pairs", n=len(X), d=64, k=16, steps=5000, pair_strategy="exact", smooth_temperature=None)
    model = GaussianSampler(
        k=16, dim=64, n_samples=20, mode="pairs", init_mean="gaussian", init_variance=0.5, loss=loss
    )
    model.prepare(X)  # the once-per-run precomputation (centering, 1/||x_i - x_j||^2 table)

    def embedded_step():
        model.zero_grad(set_to_none=True)
        loss, _, _ = model.objective(X)
        loss.backward()

    iu = torch.triu_indices(len(X), len(X), 1)
    diffs = X[iu[0]] - X[iu[1]]  # (1.6 M, 64): formed once, outside the timing
    dx = diffs.pow(2).sum(1)
    mean = model.mean.detach().clone().requires_grad_(True)
    s2 = torch.tensor(0.5, requires_grad=True)

    def difference_step():
        mean.grad = None
        s2.grad = None
        noise = torch.randn(20, 16, 64)
        for s in range(20):
            A = (mean + s2.sqrt() * noise[s]) / 4.0
            ratio = (diffs @ A.T).pow(2).sum(1) / dx
            ((ratio - 1).abs().amax() / 20).backward()
        (s2 / 2).backward()

    timings = []
    for step in (embedded_step, difference_step):
        step()  # warm-up
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - start)
        timings.append(best)
    return timings[0], timings[1]


def train_variant(overrides: list[str], steps: int, threads: int, seed: int) -> dict:
    import tempfile

    from omegaconf import open_dict

    from jl_lightning.apps.config import compose
    from jl_lightning.lightning.fit import fit_from_config

    cfg = compose(
        [
            "experiment=digits_pairs",
            f"trainer.max_steps={steps}",
            "logger=none",
            "~callbacks.model_checkpoint",
            "~callbacks.progress_bar",
            "baseline.draws=0",
            f"threads={threads}",
            f"seed={seed}",
            *overrides,
        ]
    )
    with tempfile.TemporaryDirectory() as scratch, open_dict(cfg):
        cfg.paths.output_dir = scratch
        return fit_from_config(cfg, interactive=False).summary


def epsilon_at(history, seconds: float) -> float:
    """Best epsilon of M seen within the first ``seconds`` of training."""
    seen = [eps for _, t, eps in history if t <= seconds]
    return min(seen) if seen else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["step", "strategies"])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    command = "python scripts/bench_pairs.py " + " ".join(sys.argv[1:])
    lines = [
        f"### Pairs mode on digits (k = 16, 1797 points, 1.6 M pairs) ({dt.date.today().isoformat()})",
        "",
        f"- command: `{command.strip()}`",
        machine_line(args.threads),
        "",
    ]
    if args.only in (None, "step"):
        fast, slow = time_exact_step(args.repeats)
        lines += [
            f"One exact all-pairs training step, forward and backward, N = 20 samples (best of {args.repeats}):",
            "",
            "| form | seconds per step |",
            "|---|---|",
            f"| embedded space (module's exact strategy: tiled Gram scan, gradient through the worst pairs) "
            f"| {fast:.3f} |",
            f"| difference vectors (all x_i - x_j formed, autograd through the max) | {slow:.3f} |",
            "",
            f"- ratio: the embedded-space step is {slow / fast:.1f}x faster",
            "",
        ]
    if args.only in (None, "strategies"):
        checkpoints = [10, 30, 60, 120]
        header = " | ".join(f"eps by {c} s" for c in checkpoints)
        lines += [
            f"Training `experiment=digits_pairs`, {args.steps} steps, seed {args.seed}; epsilon is the exact "
            "all-pairs epsilon of M on the training points (80 %), evaluated every 50 steps:",
            "",
            f"| variant | s/step | {header} | final eps | training s |",
            "|---|---|" + "---|" * len(checkpoints) + "---|---|",
        ]
        for name, overrides in VARIANTS.items():
            summary = train_variant(overrides, args.steps, args.threads, args.seed)
            history = summary["distortion_history"]
            cells = " | ".join(f"{epsilon_at(history, c):.3f}" for c in checkpoints)
            lines.append(
                f"| {name} | {summary['fit_seconds'] / summary['steps']:.4f} | {cells} "
                f"| {summary['best_distortion']:.3f} | {summary['fit_seconds']:.0f} |"
            )
            print(lines[-1], flush=True)
        lines.append("")
    report("pairs", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
