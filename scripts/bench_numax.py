"""NuMax against the learned matrix on digits (pairs), k by k; rewrites section numax:digits of
docs/benchmarks.md.

    python scripts/bench_numax.py                  # k = 8 16 32
    python scripts/bench_numax.py --k 16 --steps 4

For each k: NuMax's k-row map (``baselines/numax.numax_for_k``: bisection on delta, the best
top-k truncation met, best-scaled), its seconds, and the learned matrix of a real
``jl-train experiment=digits_pairs model.k=K`` (seed 0), every epsilon exact over all
1.03 million training pairs; beside them PCA with its best scale and the best of 100
Gaussian draws (from the run's summary).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine_line, report, run_jl_train, stamp_now  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--k", nargs="+", type=int, default=[8, 16, 32])
    parser.add_argument("--steps", type=int, default=4, help="bisection steps after the first solve")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()

    import torch
    from hydra import compose, initialize_config_dir

    from jl_lightning.apps.config import CONFIG_DIR
    from jl_lightning.baselines.numax import numax_for_k
    from jl_lightning.lightning.fit import build_datamodule

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=digits_pairs"])
    points = build_datamodule(cfg.data).points
    stamp = "numax-" + stamp_now()
    rows = [
        "| k | learned (jl-train) | NuMax (best scale) | NuMax delta / rank | NuMax solves, s, peak MB | "
        "PCA (best scale) | best Gaussian of 100 | learned <= NuMax |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in args.k:
        tracemalloc.start()
        began = time.perf_counter()
        nu = numax_for_k(points, k, steps=args.steps)
        seconds = time.perf_counter() - began
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        run = run_jl_train(f"k{k}", ["experiment=digits_pairs", "logger=csv", f"model.k={k}"], 0, stamp, [])
        refs = run["references"]
        learned = run["final_distortion"]
        verdict = "yes" if learned <= nu["epsilon_scaled"] else "**no**"
        rows.append(
            f"| {k} | {learned:.4f} | {nu['epsilon_scaled']:.4f} | {nu['delta']:.3g} / {nu['rank']} | "
            f"{nu['solves']}, {seconds:.0f}, {peak:.0f} | {refs['pca']['epsilon_scaled']:.4f} | "
            f"{refs['gaussian']['best']:.4f} | {verdict} |"
        )
        print(rows[-1], flush=True)
    lines = [
        "### NuMax against the learned matrix (digits, all training pairs)",
        "",
        "- command: `python scripts/bench_numax.py` (NuMax: ADMM with column generation, bisection on delta "
        f"over [0.05, 0.9] with {args.steps} steps after the first solve; learned: `jl-train "
        "experiment=digits_pairs model.k=K`, seed 0)",
        machine_line(torch.get_num_threads()),
        f"- date: {dt.date.today().isoformat()}",
        "",
        *rows,
        "",
        "Every epsilon is the exact max over all 1.03 million pairs of the 1,438 training points. NuMax's "
        "column is its best top-k truncation over the deltas tried, with its best single scale (as PCA "
        "gets). Its delta is the delta of that P, and its rank is that P's numerical rank (eigenvalues "
        "above 1e-6 of the largest). Peak MB is Python's traced allocations during NuMax.",
    ]
    report("numax:digits", lines, not args.no_write)


if __name__ == "__main__":
    main()
