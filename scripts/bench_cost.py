"""What a step and an exact pass cost against d, k and sparsity, at n = 10^4, with the defaults.

    python scripts/bench_cost.py                      # the whole grid; rewrites docs/scale.md's section
    python scripts/bench_cost.py --d 384 --k 32 --no-write

For each d (dense: structured rows, rank 64 plus noise, unit norm; sparse: random CSR rows
with ``--nnz`` stored entries each) and each k, one child process builds the active-pairs loss
as a fit of n points builds it (conf/model's loss, every ``auto`` resolved by core/plan.py)
and times, best of ``--repeats``:

* a noisy step: the loss over the active set with N sampled matrices, and its backward;
* a deterministic step: the same after the switch (sigma^2 = 0);
* the run's exact pass (``lightning/sampler.refresh_pass``: epsilon, the hard pairs and the
  candidates, as a refresh runs it) and a bare pass of the same map over the same pairs (the
  epsilon alone): their ratio is what ranking the worst pairs adds;

and reports its peak RSS. The cost model these figures check: a step multiplies the pairs'
distinct rows (at most n) by M and the noise, n·d·(N+1)·k operations dense, nnz·(N+1)·k
sparse; a pass is n²·d / 2 for the pairs' distances (a Gram product, nnz-bound for sparse
rows) plus n²·k / 2 in the embedded space.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ROOT, machine_line, report, write_section  # noqa: E402

SCALE = ROOT / "docs" / "scale.md"
DENSE = (384, 1024, 4096)
KS = (32, 64, 128, 256)

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
sys.path.insert(0, sys.argv[1])
from benchlib import default_loss
from jl_lightning.core.losses import loss_options, make_loss
from jl_lightning.core.plan import choose
from jl_lightning.lightning.distributed import exact_report
from jl_lightning.lightning.sampler import refresh_pass
from jl_lightning.sparse_rows import SparseRows
n, d, k, nnz, repeats = (int(a) for a in sys.argv[2:7])
rng = np.random.default_rng(0)
if nnz:
    import scipy.sparse as sp
    rows = np.repeat(np.arange(n), nnz)
    cols = rng.integers(0, d, n * nnz)
    X = sp.csr_matrix((rng.random(n * nnz).astype(np.float32), (rows, cols)), shape=(n, d))
    X = sp.diags(1 / np.sqrt(X.multiply(X).sum(1).A.ravel())) @ X
    points = SparseRows(X.tocsr().astype(np.float32))
else:
    basis = rng.standard_normal((64, d))
    X = rng.standard_normal((n, 64)) @ basis + 0.1 * rng.standard_normal((n, d))
    points = torch.from_numpy((X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32))
plan = choose(mode="pairs", n=n, d=d, k=k, steps=5000)
loss = make_loss(mode="pairs", **loss_options(default_loss("pairs", n, d, k, 5000)))
loss.prepare(points)
loss.start_at_ties()
M = (torch.randn(k, d) / d**0.5).requires_grad_()
sigma = torch.tensor(0.3, requires_grad=True)

def best(call):
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return min(times)

def step(s):
    term, _ = loss(M, s, plan.n_samples, 0, 5000)
    term.mean().backward()

out = {"noisy_step": best(lambda: step(sigma)), "deterministic_step": best(lambda: step(None))}
embedding = M.detach() / k**0.5
kwargs = dict(quantiles=False, mean_abs=False)
out["pass"] = best(lambda: refresh_pass(embedding, loss))
out["bare_pass"] = best(lambda: exact_report(embedding, points, "pairs", **kwargs))
out["n_samples"] = plan.n_samples
out["pairs"] = n * (n - 1) // 2
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def measure(n: int, d: int, k: int, nnz: int, repeats: int) -> dict:
    args = [str(ROOT / "scripts"), str(n), str(d), str(k), str(nnz), str(repeats)]
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict], n: int, command: str) -> list[str]:
    lines = [
        f"### Step and pass cost against d and k (n = {n:,}, defaults)",
        "",
        f"`{command}`; {dt.date.today().isoformat()}",
        machine_line(),
        "",
        "| d | k | noisy step (s) | deterministic step (s) | exact pass, run's (s) | bare pass (s) "
        "| run's / bare | peak RSS (GB) |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row in rows:
        d = f"{row['d']:,} sparse, {row['nnz']} nnz/row" if row["nnz"] else f"{row['d']:,}"
        lines.append(
            f"| {d} | {row['k']} | {row['noisy_step']:.3g} | {row['deterministic_step']:.3g} | {row['pass']:.3g} | "
            f"{row['bare_pass']:.3g} | {row['pass'] / row['bare_pass']:.2f} | {row['peak_rss_mb'] / 1024:.2f} |"
        )
    lines += [
        "",
        f"Each figure is the best of the script's repeats in a fresh process per row; the noisy step draws "
        f"N = {rows[0]['n_samples'] if rows else '?'} matrices (the auto N at this n), and the run's "
        "pass also ranks the 8,192 hard pairs and the 2²¹ candidates.",
    ]
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--d", type=int, nargs="*", default=list(DENSE))
    parser.add_argument("--k", type=int, nargs="*", default=list(KS))
    parser.add_argument("--sparse-d", type=int, default=20_000, help="0: no sparse rows")
    parser.add_argument("--nnz", type=int, default=100, help="stored entries per sparse row")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    shapes = [(d, 0) for d in args.d] + ([(args.sparse_d, args.nnz)] if args.sparse_d else [])
    rows = []
    for d, nnz in shapes:
        for k in args.k:
            row = {"d": d, "k": k, "nnz": nnz, **measure(args.n, d, k, nnz, args.repeats)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    command = "python scripts/bench_cost.py" + ("" if argv is None else " " + " ".join(argv))
    lines = table(rows, args.n, command)
    if args.no_write:
        report("cost", lines, write=False)
    else:
        print("\n".join(lines))
        print(f"rewrote section 'cost' of {write_section('cost', chr(10).join(lines), SCALE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
