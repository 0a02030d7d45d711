"""jl-embed on a large file: peak memory and throughput of the streaming path.

    python scripts/bench_embed.py                  # 10^6 vectors, d=384, k=32 (target: peak <= 500 MB)
    python scripts/bench_embed.py --n 200000 --no-write

Writes a float32 .npy of n x d random vectors (in a separate process, in chunks) and a
k x d matrix into a temporary folder, runs the real ``jl-embed`` command in a child
process, and reads the child's peak resident memory (ru_maxrss) and wall time. The
file is written by another process on purpose: a child forked from a process that has
touched the file's pages starts with that resident size, which would inflate ru_maxrss.
Checks the output against a direct computation on a sample of rows. Appends
the result to docs/benchmarks.md with the command, machine and date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import entry_command, machine_line, report


def write_vectors(path: Path, n: int, d: int, chunk: int = 65536) -> None:
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.default_rng(0)
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        out[start : start + rows] = rng.standard_normal((rows, d), dtype=np.float32)
    out.flush()
    del out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=384)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--generate", help=argparse.SUPPRESS)  # internal: write the vectors file and exit
    args = parser.parse_args()
    if args.generate:
        write_vectors(Path(args.generate), args.n, args.d)
        return
    with tempfile.TemporaryDirectory(prefix="bench_embed_") as scratch:
        scratch = Path(scratch)
        source, matrix_path, output = scratch / "vectors.npy", scratch / "matrix.npy", scratch / "embedded.npy"
        subprocess.run(
            [sys.executable, __file__, "--generate", str(source), "--n", str(args.n), "--d", str(args.d)], check=True
        )
        matrix = np.random.default_rng(1).standard_normal((args.k, args.d)) / np.sqrt(args.k)
        np.save(matrix_path, matrix)
        cmd = entry_command("jl-embed") + [str(matrix_path), str(source), str(output)]
        start = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not all children's
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(child.stderr.read().decode())
        peak_mb = usage.ru_maxrss / 1024  # KiB on Linux
        result = np.load(output, mmap_mode="r")
        rows = np.random.default_rng(2).choice(args.n, 1000, replace=False)
        expected = np.load(source, mmap_mode="r")[np.sort(rows)].astype(np.float64) @ matrix.T
        error = float(np.abs(result[np.sort(rows)] - expected).max())
        size_mb = source.stat().st_size / 2**20
    command = "python scripts/bench_embed.py " + " ".join(sys.argv[1:])
    lines = [
        f"### jl-embed streaming ({dt.date.today().isoformat()})",
        "",
        f"- command: `{command.strip()}`",
        machine_line(1).replace("1 torch thread(s)", "numpy only"),
        f"- input: {args.n} float32 vectors, d={args.d} ({size_mb:.0f} MiB .npy); matrix k={args.k}; "
        f"default chunk of 16384 rows",
        f"- peak resident memory of the `jl-embed` process: **{peak_mb:.0f} MB** (target <= 500 MB)",
        f"- wall time: {wall:.1f} s ({args.n / wall / 1e6:.2f} M vectors/s, Python start-up included)",
        f"- max abs error on 1000 sampled rows against float64 numpy: {error:.2e} (float32 output)",
        "",
    ]
    report("embed", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
