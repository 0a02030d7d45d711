"""Epsilon against k for every method on the same pairs; rewrites section curve:DATA of
docs/benchmarks.md and its figure docs/figures/curve_DATA.png.

    python scripts/bench_curve.py                        # digits, k = 8 12 16 24 32
    python scripts/bench_curve.py --data clusters --k 8 16 32
    python scripts/bench_curve.py --k 8 16 --no-write    # print only

Two real commands, as a user runs them:
1. ``jl-train -m experiment=digits_pairs model.k=K1,K2,...`` (``--data clusters`` adds
   ``data=clusters data.source.n=1250 data.source.d=64``: 1,000 clustered training points,
   250 held out, at digits' d, so that NuMax, whose ADMM iteration costs O(m d^2 + d^3),
   costs about what it costs on digits), one run per k, seed 0, without references;
2. ``jl-compare compare.sweep=<that multirun> compare.methods=[gaussian,pca,numax]``: at every k,
   the run's exported matrix beside the best of 100 Gaussian draws, PCA with its best scale
   and NuMax's k-row map, every epsilon exact over all training pairs, with the held-out
   figures and recall@10.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ROOT, entry_command, machine_line, report, stamp_now  # noqa: E402

DATA = {
    "digits": ["experiment=digits_pairs"],
    "clusters": ["experiment=digits_pairs", "data=clusters", "data.source.n=1250", "data.source.d=64"],
}
METHODS = "[gaussian,pca,numax]"


def run(entry: str, args: list[str]) -> float:
    cmd = entry_command(entry) + args
    began = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=list(DATA), default="digits")
    parser.add_argument("--k", nargs="+", type=int, default=[8, 12, 16, 24, 32])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    base = ROOT / "outputs" / "bench" / f"curve-{args.data}-{stamp_now()}"
    sweep, out = base / "sweep", base / "curve"
    ks = ",".join(str(k) for k in args.k)
    train_args = ["-m", *DATA[args.data], f"model.k={ks}", "baseline.draws=0", "logger=csv", "seed=0"]
    train_s = run("jl-train", [*train_args, f"hydra.sweep.dir={sweep}"])
    compare_args = [f"compare.methods={METHODS}", "compare.draws=100"]
    compare_s = run("jl-compare", [f"compare.sweep={sweep}", *compare_args, f"hydra.run.dir={out}"])

    records = list(csv.DictReader((out / "curve.csv").open()))
    value = {(int(r["k"]), r["method"]): r for r in records}
    rows = [
        "| k | learned | NuMax (best scale) | PCA (best scale) | best Gaussian of 100 | learned <= NuMax | "
        "held-out pairs: learned / NuMax / PCA | recall@10: learned / best Gaussian / PCA |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in args.k:
        get = {m: value[(k, m)] for m in ("learned (jl-train)", "numax (best scale)", "pca (best scale)", "gaussian")}
        eps = {m: float(r["epsilon"]) for m, r in get.items()}
        verdict = "yes" if eps["learned (jl-train)"] <= eps["numax (best scale)"] else "**no**"
        held = " / ".join(
            f"{float(get[m]['heldout_pairs_distortion']):.3f}"
            for m in ("learned (jl-train)", "numax (best scale)", "pca (best scale)")
        )
        recall = " / ".join(
            f"{float(get[m]['recall']):.3f}" for m in ("learned (jl-train)", "gaussian", "pca (best scale)")
        )
        rows.append(
            f"| {k} | {eps['learned (jl-train)']:.4f} | {eps['numax (best scale)']:.4f} | "
            f"{eps['pca (best scale)']:.4f} | {eps['gaussian']:.4f} | {verdict} | {held} | {recall} |"
        )
    figure = ROOT / "docs" / "figures" / f"curve_{args.data}.png"
    lines = [
        f"### Epsilon against k, {args.data} (pairs)",
        "",
        f"- command: `{' '.join(['python scripts/bench_curve.py', *sys.argv[1:]])}`",
        f"  - `jl-train {' '.join(train_args)}` ({train_s / 60:.1f} min)",
        f"  - `jl-compare compare.sweep=<that folder> {' '.join(compare_args)}` ({compare_s / 60:.1f} min, "
        "NuMax most of it)",
        machine_line(),
        f"- date: {dt.date.today().isoformat()}",
        "",
        *rows,
        "",
        "Every epsilon is the exact max over all training pairs; the held-out column is over the "
        "held-out points' pairs. NuMax: its best top-k truncation over the deltas of its bisection, "
        "with its best single scale (as PCA gets). The learned matrix is the exported one of a "
        "`jl-train` run per k (seed 0).",
        "",
        f"![epsilon against k, {args.data}](figures/curve_{args.data}.png)",
    ]
    if not args.no_write:
        figure.parent.mkdir(exist_ok=True)
        shutil.copyfile(out / "curve.png", figure)
    report(f"curve:{args.data}", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
