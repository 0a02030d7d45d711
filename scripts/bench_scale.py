"""The cost model at scale: one exact pairs pass and one training step as functions of n.

    python scripts/bench_scale.py                 # n = 1e4, 3e4, 1e5; rewrites its section of docs/benchmarks.md
    python scripts/bench_scale.py --sizes 10000 --no-write
    python scripts/bench_scale.py --training                # one `jl-train experiment=clusters_1e5`, its own section
    python scripts/bench_scale.py --training-from RUN_DIR   # the same section from a finished run of it
    python scripts/bench_scale.py --device cuda --sizes 100000 300000 1000000   # one GPU, its own section
    python scripts/bench_scale.py --training-from RUN_DIR --experiment clusters_1e6   # the GPU run's section

For each n, in a fresh process (so its peak memory is its own): ``data=clusters``
points (d=384, unit norm, float32 in memory) and a Gaussian k=32 map; the time of the
certifying pass (``evaluate(A, X, "pairs")``, epsilon only) and of a refresh pass (the
8192 worst pairs, as the active set needs), each against this machine's float32 GEMM
rate counting 2 (n^2/2)(d + k) flops; the peak resident memory above the resident memory
before the pass (VmHWM - VmRSS, Linux); and the time of one training step of the active
strategy (8192 hard + 10000 random pairs, N=10 samples), which does not depend on n.
The pass time is fitted as c n^2 / 2 and extrapolated; the GPU line is a prediction
from an assumed rate, not a measurement.

``--device cuda`` measures the same on one GPU, in its own section: the points are the
first n rows of ``experiment=clusters_1e6``'s cached file (``--cache-dir``), so that run
reuses them; the memory is the GPU's peak allocation above what the pass found allocated,
and the GEMM rate is the pass's own CUDA tile shape (16384 x 386 x 16384).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from benchlib import default_loss, machine_line, report, run_jl_train, stamp_now

D, K, HARD = 384, 32, 8192
# assumed for the GPU prediction: half the FP32 (non-tensor-core) peak of an H100 PCIe, 51 TFLOP/s
GPU_ASSUMED_GFLOPS = 25_000


def status_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def gemm_gflops(device: str = "cpu") -> float:
    """The float32 rate of the pass's own GEMM shape: (b x 386) @ (386 x b), b = 1024 on a
    CPU and 16384 on CUDA (the screened pass's tile rows there)."""
    # the pass itself runs at "highest" (true float32, no TF32), so the rate is measured so too
    torch.set_float32_matmul_precision("highest")
    b = 16384 if device == "cuda" else 1024
    a, c = torch.randn(b, D + 2, device=device), torch.randn(D + 2, b, device=device)
    for _ in range(3):
        a @ c
    best = min(_timed(lambda: [a @ c for _ in range(20)], device) for _ in range(10)) / 20
    return 2 * b * b * (D + 2) / best / 1e9


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device: str = "cpu") -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def probe(n: int, device: str = "cpu", source_n: int | None = None, cache_dir: str | None = None) -> dict:
    """Everything measured at one n, in this (fresh) process. ``source_n``/``cache_dir``:
    the points are the first n rows of that cached data set (the GPU probe's)."""

    from jl_lightning.io.sources import ClustersPoints
    from jl_lightning.lightning.sampler import GaussianSampler
    from jl_lightning.metrics import evaluate

    X = ClustersPoints(n=max(n, source_n or n), d=D, seed=0, cache_dir=cache_dir).load()[:n]
    A = torch.as_tensor(np.random.default_rng(1).standard_normal((K, D)) / np.sqrt(K), device=device)
    evaluate(A, X[:3000], "pairs", screen=True)  # kernels and allocator pools
    cuda = device == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = status_kb("VmRSS")
    began = time.perf_counter()
    certify = evaluate(A, X, "pairs")
    _sync(device)
    certify_s = time.perf_counter() - began
    extra_mb = (torch.cuda.max_memory_allocated() - before) / 2**20 if cuda else (status_kb("VmHWM") - before) / 1024
    refresh_s = _timed(lambda: evaluate(A, X, "pairs", worst=HARD), device)
    loss = default_loss("pairs", n=n, d=D, k=K, steps=5000, active_hard=HARD, active_random=10000)
    model = GaussianSampler(k=K, dim=D, mode="pairs", n_samples=10, loss=loss)
    model.to(device)
    points = torch.from_numpy(np.asarray(X)).to(device)
    model.prepare(points)
    rng = np.random.default_rng(2)
    model.loss_fn.set_hard(rng.integers(0, n, HARD), rng.integers(0, n, HARD))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)

    def step():
        loss, _, _ = model.objective(points)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    step_s = _timed(lambda: [step() for _ in range(10)], device) / 10
    return {
        "n": n,
        "certify_s": certify_s,
        "refresh_s": refresh_s,
        "extra_mb": extra_mb,
        "step_s": step_s,
        "epsilon": certify.epsilon,
        "data_mb": X.nbytes / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[10_000, 30_000, 100_000])
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--probe", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--source-n",
        type=int,
        default=1_250_000,
        help="with --device cuda: the cached data set whose first rows are probed (experiment=clusters_1e6's)",
    )
    parser.add_argument("--cache-dir", default="outputs/data", help="with --device cuda: where that data set is cached")
    parser.add_argument("--training", action="store_true", help="run jl-train experiment=clusters_1e5 and report it")
    parser.add_argument("--training-from", help="report a finished run folder of experiment=clusters_1e5")
    parser.add_argument(
        "--experiment",
        default="clusters_1e5",
        choices=["clusters_1e5", "clusters_1e6"],
        help="the experiment of --training / --training-from",
    )
    parser.add_argument("--time-log", help="the run's `/usr/bin/time -v` output, for its peak memory")
    args = parser.parse_args()
    gpu = args.device == "cuda"
    if args.probe:
        print(
            json.dumps(probe(args.probe, args.device, args.source_n if gpu else None, args.cache_dir if gpu else None))
        )
        return
    if args.training or args.training_from:
        training_section(args.training_from, args.time_log, args.experiment, write=not args.no_write)
        return
    rate = gemm_gflops(args.device)
    rows = []
    for n in args.sizes:
        extra = ["--device", args.device, "--source-n", str(args.source_n), "--cache-dir", args.cache_dir]
        out = subprocess.run([sys.executable, __file__, "--probe", str(n), *extra], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"the probe at n={n} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    # the machine's rate is the best seen before and after the probes (shared machines vary)
    rate = max(rate, gemm_gflops(args.device))
    pairs = np.array([r["n"] * (r["n"] - 1) / 2 for r in rows])
    # least squares through the origin on the pair count: seconds = c * pairs
    c_certify = float(pairs @ [r["certify_s"] for r in rows] / (pairs @ pairs))
    c_refresh = float(pairs @ [r["refresh_s"] for r in rows] / (pairs @ pairs))
    # extra memory = fixed + per point, least squares
    per_point_mb, fixed_mb = (
        np.polyfit([r["n"] for r in rows], [r["extra_mb"] for r in rows], 1)
        if len(rows) > 1
        else (rows[0]["extra_mb"] / rows[0]["n"], 0.0)
    )
    step_s = float(np.mean([r["step_s"] for r in rows]))
    flops_per_pair = 2 * (D + K)
    command = ("python scripts/bench_scale.py " + " ".join(sys.argv[1:])).strip()
    where = (
        f"- device: {torch.cuda.get_device_name(0)}, {torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB"
        if gpu
        else ""
    )
    memory = "GPU memory beyond the data" if gpu else "extra memory"
    data = (
        f"the first n rows of `experiment=clusters_1e6`'s points (n={args.source_n:,}, cached in {args.cache_dir})"
        if gpu
        else "`data=clusters`"
    )
    lines = [
        f"### The cost model at scale{' on one GPU' if gpu else ''} ({dt.date.today().isoformat()})",
        "",
        f"- command: `{command}`",
        machine_line(),
        *([where] if gpu else []),
        "",
        f"{data} (d={D}, unit norm), a Gaussian k={K} map; GEMM rate of the pass's own "
        f"shape on this {'GPU' if gpu else 'machine'} (true float32, no TF32), best of before and after the "
        f"probes: **{rate:.0f} GFLOP/s**. "
        + (
            "GPU memory = the peak allocation during the pass above what was allocated before it; "
            "the points stay in host memory (memory-mapped) and are copied to the GPU once as float32 rows."
            if gpu
            else "Extra memory = peak resident memory of the pass above the resident memory before it, "
            "the float32 data already loaded."
        ),
        "",
        f"| n | pairs | certifying pass | % of GEMM rate | refresh pass (8192 worst) | {memory} | "
        "data | one training step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r, p in zip(rows, pairs):
        share = 100 * p * flops_per_pair / r["certify_s"] / 1e9 / rate
        lines.append(
            f"| {r['n']:,} | {p:.2e} | {r['certify_s']:.2f} s | {share:.0f} % | {r['refresh_s']:.2f} s | "
            f"{r['extra_mb']:.0f} MB | {r['data_mb']:.0f} MB | {r['step_s'] * 1000:.1f} ms |"
        )
    lines += [
        "",
        f"Fitted: certifying pass = {c_certify * 1e9:.3f} s per 10^9 pairs, refresh pass = "
        f"{c_refresh * 1e9:.3f} s per 10^9 pairs; {memory} {fixed_mb:.0f} MB + {per_point_mb * 1024:.2f} KB "
        f"per point; a step {step_s * 1000:.1f} ms whatever n.",
        "",
    ]
    if gpu:
        lines += [
            "| n | pairs | certifying pass, this GPU | refresh pass, this GPU | GPU memory beyond the data |",
            "|---|---|---|---|---|",
        ]
        for n in (10**7,):
            p = n * (n - 1) / 2
            lines.append(
                f"| {n:.0e} (predicted) | {p:.1e} | {c_certify * p / 60:.0f} min | "
                f"{c_refresh * p / 60:.0f} min | {(fixed_mb + per_point_mb * n) / 1024:.1f} GB |"
            )
        report("scale-gpu", lines, write=not args.no_write)
        return
    lines += [
        "| n | pairs | certifying pass, this CPU | refresh pass, this CPU | extra memory | "
        f"certifying pass, one GPU at an assumed {GPU_ASSUMED_GFLOPS / 1000:.0f} TFLOP/s |",
        "|---|---|---|---|---|---|",
    ]
    for n in (10**6, 10**7):
        p = n * (n - 1) / 2
        gpu_s = p * flops_per_pair / (GPU_ASSUMED_GFLOPS * 1e9)
        lines.append(
            f"| {n:.0e} (predicted) | {p:.1e} | {c_certify * p / 3600:.1f} h | {c_refresh * p / 3600:.1f} h | "
            f"{(fixed_mb + per_point_mb * n) / 1024:.1f} GB | {gpu_s:.0f} s |"
        )
    report("scale", lines, write=not args.no_write)


def run_machine(summary: dict, run_dir: str | None) -> list[str]:
    """The machine and device lines of a run, from its own record where it has one: a run
    reported with --training-from may have run elsewhere (a GPU machine). ``device.txt`` in
    the run folder (what nvidia-smi said, written by scripts/gpu_checks.sh) names the GPU of
    a run whose summary predates its ``host`` field and reads ``device`` at train start; a
    folder with neither is taken to have run here."""
    host = summary.get("host")
    noted = Path(run_dir) / "device.txt" if run_dir else None
    noted = noted if noted is not None and noted.is_file() else None
    device = noted.read_text().strip().splitlines()[0] if noted else summary.get("device")
    if host is not None:
        line = (
            f"- machine: {host['machine']}, {host['cpus']} cores, torch {summary['torch_version']}, "
            f"{summary['torch_threads']} torch thread(s), Python {host['python']}"
        )
    elif noted:
        line = f"- machine: torch {summary['torch_version']}, {summary['torch_threads']} torch thread(s)"
    else:
        line = machine_line(summary["torch_threads"])
    return [line, *([f"- device: {device}"] if device else [])]


def training_section(run_dir: str | None, time_log: str | None, experiment: str, write: bool) -> None:
    """The training target at n = 10^5 (CPU) or 10^6 (one GPU): certified epsilon against PCA
    and the Gaussian draws."""
    if run_dir is None:
        summary = run_jl_train(experiment, [f"experiment={experiment}"], 0, stamp_now(), [])
        command = "python scripts/bench_scale.py --training" + (
            f" --experiment {experiment}" if experiment != "clusters_1e5" else ""
        )
        wall = summary["wall"]
    else:
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
        timed = "/usr/bin/time -v " if time_log else ""
        command = (
            f"`{timed}jl-train experiment={experiment} hydra.run.dir={run_dir}`, reported by "
            f"`python scripts/bench_scale.py {' '.join(sys.argv[1:])}`"
        )
        wall = summary["wall_seconds"]
    if time_log:  # the process's own wall clock, start-up and data included
        elapsed = [line for line in Path(time_log).read_text().splitlines() if "Elapsed (wall clock)" in line]
        if elapsed:
            wall = sum(float(part) * 60**i for i, part in enumerate(reversed(elapsed[0].split()[-1].split(":"))))
    gpu = experiment == "clusters_1e6"
    refs = summary["references"]
    gauss, pca = refs["gaussian"], refs["pca"]
    eps = summary["final_distortion"]
    held = summary.get("heldout") or {}
    report_ = summary["final_report"]
    lines = [
        f"### Training at n = 10^{6 if gpu else 5}{' on one GPU' if gpu else ''} ({dt.date.today().isoformat()})",
        "",
        f"- command: {command if run_dir else '`' + command + '`'}",
        *run_machine(summary, run_dir),
        "",
        f"`experiment={experiment}`: {summary['n']:,} training points ({report_['count']:.2e} pairs), "
        f"{summary['n_heldout']:,} held out, d={summary['d']} -> k={summary['k']}, "
        f"{summary['steps']} steps, seed {summary['seed']}.",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| certified ε over all training pairs (final matrix, one exact pass) | **{eps:.4f}** | |",
        f"| best of {gauss['draws']} Gaussian draws | {gauss['best']:.4f} (mean {gauss['mean']:.4f}) | |",
        f"| PCA with its best scale | {pca['epsilon_scaled']:.4f} (plain {pca['epsilon']:.4f}) | |",
        f"| ε / best Gaussian | {eps / gauss['best']:.3f} | ≤ 0.25 |",
        f"| ε / best-scaled PCA | {eps / pca['epsilon_scaled']:.3f} | ≤ 0.5 |",
    ]
    for name, label in (
        ("pairs", "held-out pairs"),
        ("cross_pairs", "train × held-out pairs"),
        ("points", "held-out norms"),
    ):
        if name in held:
            lines.append(f"| ε on {label} ({held[name]['count']:.2e}) | {held[name]['epsilon']:.4f} | |")
    recall = summary.get("recall")
    if recall:
        lines.append(
            f"| recall@{recall['k']} over {recall['queries']} queries: learned / best Gaussian / PCA | "
            f"{recall['learned']:.3f} / {recall.get('gaussian', float('nan')):.3f} / "
            f"{recall.get('pca', float('nan')):.3f} | |"
        )
    log_file = Path(run_dir or summary["run_dir"]) / "train.log"
    passes = [
        float(m)
        for m in re.findall(
            r"exact pass over \d+ pairs in ([0-9.]+) s", log_file.read_text() if log_file.exists() else ""
        )
    ]
    if passes:
        lines.append(
            f"| refresh passes (8192 hard pairs and the candidates) | {len(passes)}, "
            f"{min(passes):.0f} to {max(passes):.0f} s each | |"
        )
    lines += [
        f"| fit (steps, refresh passes, tracker passes) | {summary['fit_seconds'] / 60:.1f} min | |",
        f"| references ({gauss['draws']} Gaussian draws {gauss['seconds']:.0f} s, PCA {pca['seconds']:.0f} s) "
        f"| {summary['reference_seconds'] / 60:.1f} min | |",
        f"| whole run, wall | **{wall / 60:.1f} min** | ≤ 30 min |",
    ]
    if time_log:
        peak = [line for line in Path(time_log).read_text().splitlines() if "Maximum resident set size" in line]
        if peak:
            lines.append(
                f"| peak resident memory of the whole run (data, float64 copy, references) | "
                f"{int(peak[0].split()[-1]) / 2**20:.2f} GB | |"
            )
    report("scale-training-gpu" if gpu else "scale-training", lines, write=write)


if __name__ == "__main__":
    main()
