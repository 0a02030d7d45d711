"""Time the exact evaluator and the SRHT against issue 3's targets.

    python scripts/bench_eval.py              # prints and appends to docs/benchmarks.md
    python scripts/bench_eval.py --n-norms 1000000

* norms mode: n points, d=768, k=64, float64, against this machine's float32 matmul
  rate measured in the same run (target: >= 50 % of it at n = 10^6, <= 1 GB extra memory);
* pairs mode: n=5000, d=384, k=32 (12.5 M pairs), exact (target: <= 2 s);
* the SRHT against a dense Gaussian matrix for d = 1024, 4096, 16384, k=64
  (target: the SRHT faster for d >= 4096).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

import numpy as np
import torch
from benchlib import machine_line, report

from jl_lightning.baselines import SRHT, gaussian_matrix
from jl_lightning.distortion import norm_distortion, pair_distortion


def best_of(fn, repeats: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-norms", type=int, default=200_000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    matmul_gflops = 2 * 2048 ** 3 / best_of(lambda: a @ b) / 1e9

    X = rng.standard_normal((args.n_norms, 768)).astype(np.float32)
    A = rng.standard_normal((64, 768)) / 8
    norms_s = best_of(lambda: norm_distortion(A, X, quantiles=False), repeats=1)
    norms_gflops = 2 * args.n_norms * 768 * 64 / norms_s / 1e9

    P = rng.standard_normal((5000, 384))
    B = rng.standard_normal((32, 384)) / np.sqrt(32)
    pairs_s = best_of(lambda: pair_distortion(B, P, quantiles=False), repeats=1)
    pairs_q_s = best_of(lambda: pair_distortion(B, P), repeats=1)

    gen = torch.Generator().manual_seed(0)
    srht_rows = []
    for d in (1024, 4096, 16384):
        Y = torch.randn(2000, d, dtype=torch.float64)
        op, G = SRHT(64, d, gen), gaussian_matrix(64, d, gen)
        srht_rows.append((d, best_of(lambda: op.apply(Y)) * 1e3, best_of(lambda: Y @ G.T) * 1e3))

    command = ("python scripts/bench_eval.py " + " ".join(sys.argv[1:])).strip()
    lines = [
        f"### Exact evaluator and SRHT ({dt.date.today().isoformat()})",
        "",
        f"- command: `{command}`",
        machine_line(),
        "",
        f"- float32 matmul rate of this machine (2048^3, same run): {matmul_gflops:.1f} GFLOP/s",
        f"- norms mode, n={args.n_norms}, d=768, k=64, float64 evaluation of float32 data: "
        f"{norms_s:.2f} s = {norms_gflops:.1f} GFLOP/s of the projection "
        f"({100 * norms_gflops / matmul_gflops:.0f} % of the float32 matmul rate; target >= 50 % at n = 10^6); "
        "extra memory is not measured yet",
        f"- pairs mode, n=5000, d=384, k=32 (12.5 M pairs), float64: {pairs_s:.2f} s without quantiles, "
        f"{pairs_q_s:.2f} s with the exact median and p99 (target <= 2 s)",
        "",
        "| d | SRHT apply, 2000 x d, k=64 (ms) | dense Gaussian (ms) |",
        "|---|---|---|",
        *[f"| {d} | {s:.1f} | {g:.1f} |" for d, s, g in srht_rows],
        "",
    ]
    report(lines, write=not args.no_write)


if __name__ == "__main__":
    main()
