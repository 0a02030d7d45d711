"""Time the exact evaluator and the SRHT against issue 3's targets.

    python scripts/bench_eval.py              # prints and rewrites its section of docs/benchmarks.md
    python scripts/bench_eval.py --n-norms 1000000

* norms mode: n points, d=768, k=64, against this machine's float32 matmul rate measured
  in the same run (target: >= 50 % of it at n = 10^6, <= 1 GB extra memory), both with
  the float64 evaluator and with the screened one (float32 pass + float64 recheck of the
  extremes; same epsilon); extra memory = peak resident memory (VmHWM) minus the resident
  memory before the call, with the n x d float32 data already in memory;
* pairs mode: n=5000, d=384, k=32 (12.5 M pairs), exact (target: <= 2 s);
* the SRHT (compiled with numba when installed, and the torch transform) against a dense
  Gaussian matrix for d = 1024, 4096, 16384 and k = 64 to 1024 (target: the SRHT faster
  for d >= 4096). ``--srht-only`` runs just this part.
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import time

import numpy as np
import torch
from benchlib import machine_line, report

from jl_lightning.baselines import SRHT, gaussian_matrix, srht_kernel
from jl_lightning.baselines.random_maps import SRHT_DENSE_MAX_ENTRIES, SRHT_DENSE_MAX_K
from jl_lightning.metrics import evaluate


def _status_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def extra_memory_mb(which: str, n: int) -> float:
    """Peak resident memory of one evaluator call above the resident memory just before it,
    in MB, measured in a fresh process that builds the same data (in small chunks, so the
    data's own construction leaves no higher peak) and reports VmHWM - VmRSS (Linux)."""
    out = subprocess.run(
        [sys.executable, __file__, "--memory-probe", which, "--n-norms", str(n)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def _memory_probe(which: str, n: int) -> None:
    X = random_float32(n, 768, np.random.default_rng(0), chunk=4096)
    A = np.random.default_rng(1).standard_normal((64, 768)) / 8
    fn = {"float64": lambda A, X: evaluate(A, X, screen=False), "screened": lambda A, X: evaluate(A, X, screen=True)}[
        which
    ]
    before = _status_kb("VmRSS")
    fn(A, X)
    print((_status_kb("VmHWM") - before) / 1024)


def random_float32(n: int, d: int, rng, chunk: int = 65536) -> np.ndarray:
    """n x d float32 standard normals, built in chunks (no n x d float64 temporary)."""
    X = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, chunk):
        X[start : start + chunk] = rng.standard_normal((min(chunk, n - start), d), dtype=np.float32)
    return X


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
    parser.add_argument("--n-norms", type=int, default=1_000_000)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--srht-only", action="store_true", help="time only the SRHT against dense matrices")
    parser.add_argument("--memory-probe", choices=["float64", "screened"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_probe:
        _memory_probe(args.memory_probe, args.n_norms)
        return
    if args.srht_only:
        command = ("python scripts/bench_eval.py " + " ".join(sys.argv[1:])).strip()
        report(
            "srht",
            [
                f"### SRHT against a dense Gaussian matrix ({dt.date.today().isoformat()})",
                "",
                f"- command: `{command}`",
                machine_line(),
                "",
                *srht_lines(),
            ],
            write=not args.no_write,
        )
        return
    rng = np.random.default_rng(0)

    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    matmul_gflops = 2 * 2048**3 / best_of(lambda: a @ b) / 1e9

    X = random_float32(args.n_norms, 768, rng)
    A = rng.standard_normal((64, 768)) / 8
    flops = 2 * args.n_norms * 768 * 64
    mem64 = extra_memory_mb("float64", args.n_norms)
    mem32 = extra_memory_mb("screened", args.n_norms)
    exact, screened = evaluate(A, X, screen=False), evaluate(A, X)
    norms_s = best_of(lambda: evaluate(A, X, screen=False), repeats=1)
    screened_s = best_of(lambda: evaluate(A, X), repeats=2)
    same = (screened.epsilon == exact.epsilon, screened.worst_index == exact.worst_index)

    P = rng.standard_normal((5000, 384))
    B = rng.standard_normal((32, 384)) / np.sqrt(32)
    pairs_s = best_of(lambda: evaluate(B, P, "pairs", quantiles=False), repeats=1)
    pairs_q_s = best_of(lambda: evaluate(B, P, "pairs"), repeats=1)

    command = ("python scripts/bench_eval.py " + " ".join(sys.argv[1:])).strip()
    lines = [
        f"### Exact evaluator and SRHT ({dt.date.today().isoformat()})",
        "",
        f"- command: `{command}`",
        machine_line(),
        "",
        f"- float32 matmul rate of this machine (2048^3, same run): {matmul_gflops:.1f} GFLOP/s",
        f"- norms mode, n={args.n_norms}, d=768, k=64, float32 data, with the median and p99 "
        "(target >= 50 % of the float32 matmul rate, <= 1 GB extra memory):",
        f"  - plain float64 evaluator (`evaluate(A, X, screen=False)`): {norms_s:.2f} s = "
        f"{flops / norms_s / 1e9:.1f} GFLOP/s "
        f"= {100 * flops / norms_s / 1e9 / matmul_gflops:.0f} % of the float32 matmul rate; "
        f"extra memory {mem64:.0f} MB",
        f"  - the default, `evaluate(A, X)`, which screens at this size (float32 pass, float64 "
        f"recheck of the extremes): {screened_s:.2f} s = "
        f"{flops / screened_s / 1e9:.1f} GFLOP/s = {100 * flops / screened_s / 1e9 / matmul_gflops:.0f} % "
        f"of the float32 matmul rate; extra memory {mem32:.0f} MB; epsilon {screened.epsilon:.6g} vs "
        f"float64 {exact.epsilon:.6g} (relative difference "
        f"{abs(screened.epsilon - exact.epsilon) / exact.epsilon:.1e}, "
        f"same worst point: {same[1]})",
        f"- pairs mode, n=5000, d=384, k=32 (12.5 M pairs), float64: {pairs_s:.2f} s without quantiles, "
        f"{pairs_q_s:.2f} s with the exact median and p99 (target <= 2 s)",
        "",
        *srht_lines(),
    ]
    report("eval", lines, write=not args.no_write)


def srht_lines() -> list[str]:
    """SRHT against a dense Gaussian matrix on 2000 x d float64 data, over d and k: the
    compiled kernel (``srht_kernel``, numba; about log2(k) butterfly levels, then k short dot
    products), the torch transform (the whole transform as a few products with Hadamard
    blocks of at most 64, then k coordinates) and the SRHT's own k x d matrix applied as one
    product (what "auto" takes without numba while k and k d are small). The
    dense products' cost grows linearly with k."""
    gen = torch.Generator().manual_seed(0)
    compiled = srht_kernel.AVAILABLE
    lines = [
        f"torch threads: {torch.get_num_threads()}; the compiled SRHT (numba) "
        + (f"on {torch.get_num_threads()} threads" if compiled else "is not installed (pip install -e '.[fast]')"),
        "",
        "| d | k | SRHT compiled, 2000 x d (ms) | SRHT torch (ms) | SRHT as its k x d matrix (ms) "
        "| without numba, auto takes | dense Gaussian (ms) | dense / compiled SRHT |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in (1024, 4096, 16384):
        Y = torch.randn(2000, d, dtype=torch.float64)
        for k in (64, 256, 512, 1024):
            G = gaussian_matrix(k, d, gen)
            fast = SRHT(k, d, gen, backend="numba") if compiled else None
            slow = SRHT(k, d, gen, backend="torch")
            formed = SRHT(k, d, gen, backend="dense")
            formed.matrix()  # formed once per map: not part of applying it
            dense_ms = best_of(lambda: Y @ G.T) * 1e3
            torch_ms = best_of(lambda: slow.apply(Y)) * 1e3
            formed_ms = best_of(lambda: formed.apply(Y)) * 1e3
            auto = "matrix" if k <= SRHT_DENSE_MAX_K and k * d <= SRHT_DENSE_MAX_ENTRIES else "torch"
            row = f"| {d} | {k} | {{}} | {torch_ms:.1f} | {formed_ms:.1f} | {auto} | {dense_ms:.1f} | {{}} |"
            if fast is None:
                lines.append(row.format("-", "-"))
                continue
            fast_ms = best_of(lambda: fast.apply(Y)) * 1e3
            lines.append(row.format(f"{fast_ms:.1f}", f"{dense_ms / fast_ms:.2f}x"))
    return lines + [""]


if __name__ == "__main__":
    main()
