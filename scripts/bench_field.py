"""The field's shapes: JLEmbedding's defaults on sparse TF-IDF rows and wide dense vectors,
beside what a user of that field would otherwise run.

    python scripts/make_tfidf.py --n 12000
    python scripts/bench_field.py outputs/data/tfidf_12000.npz --k 64            # fit + references
    python scripts/bench_field.py outputs/data/tfidf_12000.npz --k 64 --phase references
    python scripts/bench_field.py outputs/data/sentences_2000b.npy --k 32 --fixed   # and every step
    python scripts/bench_field.py outputs/data/digits.npy --auto-eps 0.5 --phase fit   # k = "auto"

Phase ``fit``: ``JLEmbedding(n_components=k, mode="pairs").fit(X)`` with every default, in a
child process (wall time, peak RSS, training epsilon, whether sigma^2 reached 0), the matrix
saved under outputs/bench/field/; with ``--fixed`` also the same fit with every one of its
max_steps (``callbacks.early_stopping=null``), the figure early stopping is measured against;
with ``--auto-eps E``, ``JLEmbedding(n_components="auto", eps=E, mode="pairs")`` instead (the k
found and every k tried). Phase ``references``: scikit-learn's GaussianRandomProjection
and SparseRandomProjection (``--draws`` seeded draws each, as they are), and PCA (TruncatedSVD
for sparse rows, scikit-learn's PCA for dense) plain and at its best single scale, each
measured exactly over all training pairs with ``metrics.evaluate`` (sparse rows tile by tile).
Each phase writes a JSON; the section ``field_<name>_k<k>`` of docs/benchmarks.md is rewritten
from whatever JSONs exist.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import ROOT, machine_line, report  # noqa: E402

FIT_CHILD = """
import json, resource, sys, time, warnings
import numpy as np
from jl_lightning import JLEmbedding
from jl_lightning.io.loading import load_points
from jl_lightning.sparse_rows import SparseRows
X = load_points(sys.argv[1])
X = X.matrix if isinstance(X, SparseRows) else np.asarray(X)
k, eps = (sys.argv[2], float(sys.argv[5])) if sys.argv[2] == "auto" else (int(sys.argv[2]), None)
began = time.perf_counter()
with warnings.catch_warnings(record=True):
    warnings.simplefilter("always")
    emb = JLEmbedding(n_components=k, eps=eps, mode="pairs", overrides=tuple(json.loads(sys.argv[4]))).fit(X)
wall = time.perf_counter() - began
np.save(sys.argv[3], emb.components_)
print(json.dumps({"epsilon": emb.training_distortion_, "converged": emb.converged_, "switch_step": emb.switch_step_,
                  "steps": emb.metadata_["steps"], "fit_seconds": wall, "k": emb.components_.shape[0],
                  "k_search": getattr(emb, "k_search_", None), "jl_bound_k": getattr(emb, "jl_bound_k_", None),
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
EVERY_STEP = ["callbacks.early_stopping=null"]


def load(path: Path):
    from jl_lightning.io.loading import load_points

    return load_points(path)


def phase_fit(path: Path, k, out: Path, overrides=(), eps: float | None = None) -> dict:
    matrix = out.with_suffix(".matrix.npy")
    began = time.perf_counter()
    command = [sys.executable, "-c", FIT_CHILD, str(path), str(k), str(matrix), json.dumps(list(overrides))]
    done = subprocess.run(command + ([] if eps is None else [str(eps)]), capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - began
    return result


def phase_references(path: Path, k: int, draws: int) -> dict:
    from sklearn.decomposition import PCA, TruncatedSVD
    from sklearn.random_projection import GaussianRandomProjection, SparseRandomProjection

    from jl_lightning.metrics.distortion import best_scale, evaluate
    from jl_lightning.sparse_rows import SparseRows

    points = load(path)
    sparse = isinstance(points, SparseRows)
    X = points.matrix if sparse else np.asarray(points)
    out = {}
    projections = {
        "GaussianRandomProjection": GaussianRandomProjection,
        "SparseRandomProjection": SparseRandomProjection,
    }
    for name, cls in projections.items():
        began = time.perf_counter()
        maps = []
        for seed in range(draws):
            fitted = cls(n_components=k, random_state=seed).fit(X)
            components = fitted.components_
            maps.append(np.asarray(components.todense() if hasattr(components, "todense") else components))
        reports = evaluate(maps, points, "pairs", quantiles=False, mean_abs=False)
        eps = [r.epsilon for r in reports]
        out[name] = {"best": min(eps), "mean": float(np.mean(eps)), "draws": draws,
                     "seconds": time.perf_counter() - began}  # fmt: skip
    began = time.perf_counter()
    pca = (TruncatedSVD(n_components=k, random_state=0) if sparse else PCA(n_components=k)).fit(X)
    report_pca = evaluate(pca.components_, points, "pairs", quantiles=False, mean_abs=False)
    out["TruncatedSVD" if sparse else "PCA"] = {
        "plain": report_pca.epsilon,
        "best_scaled": best_scale(report_pca)[1],
        "seconds": time.perf_counter() - began,
    }
    return out


def section(name: str, path: Path, k: int, results: dict) -> list[str]:
    from jl_lightning.core.pairs import peak_memory_bound

    fit, refs = results.get("fit"), results.get("references")
    shape = results.get("shape")
    kind = ", sparse" if results.get("sparse") else ""
    lines = [
        f"### The field's shapes: {path.name} ({shape[0]} x {shape[1]}{kind}) -> k = {k}",
        "",
        f"`python scripts/bench_field.py {path} --k {k}{' --fixed' if results.get('fit_fixed') else ''}`; "
        f"{results.get('date')}",
        machine_line(),
        "",
        "| map | training epsilon (all pairs, exact) | notes |",
        "|---|---|---|",
    ]  # fmt: skip

    # the peak the project states for these rows (core/pairs.peak_memory_bound)
    known = not results.get("sparse") or results.get("nnz")
    bound = (
        f" (stated bound {peak_memory_bound(shape[0], shape[1], results.get('nnz')) / 2**30:.2f} GB)" if known else ""
    )

    def fit_notes(row: dict) -> str:
        return (
            f"{'converged' if row['converged'] else 'NOT converged'} (switch at step {row['switch_step']}), "
            f"{row['steps']} steps, fit {row['fit_seconds']:.0f} s, peak RSS {row['peak_rss_mb'] / 1024:.2f} GB"
            f"{bound}"
        )

    if fit:
        lines.append(
            f'| **learned, `JLEmbedding(n_components={k}, mode="pairs")` defaults** | **{fit["epsilon"]:.4f}** | '
            f"{fit_notes(fit)} |"
        )
    fixed = results.get("fit_fixed")
    if fixed:
        lines.append(
            f"| learned, the same with every step (`{EVERY_STEP[0]}`) | {fixed['epsilon']:.4f} "
            f"({100 * (fit['epsilon'] / fixed['epsilon'] - 1):+.2f} % for the defaults) | {fit_notes(fixed)} |"
        )
    for method, row in (refs or {}).items():
        if "best" in row:
            lines.append(
                f"| scikit-learn {method} | best of {row['draws']}: {row['best']:.4f} (mean {row['mean']:.4f}) | "
                f"{row['seconds']:.0f} s for the draws and their exact passes |"
            )
        else:
            lines.append(
                f"| scikit-learn {method} | {row['plain']:.4f} (best single scale {row['best_scaled']:.4f}) | |"
            )
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="a .npz (scipy.sparse.save_npz) or .npy file")
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--phase", choices=["fit", "references", "both"], default="both")
    parser.add_argument("--fixed", action="store_true", help="also fit with every step (no early stopping)")
    parser.add_argument("--auto-eps", type=float, help='fit n_components="auto" with this eps instead of --k')
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.auto_eps is not None:
        return auto_k(args)
    name = f"field_{args.data.stem}_k{args.k}"
    out = ROOT / "outputs" / "bench" / "field" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    results = json.loads(out.read_text()) if out.exists() else {}
    points = load(args.data)
    results["shape"] = list(points.shape)
    results["sparse"] = hasattr(points, "matrix")
    results["nnz"] = int(points.matrix.nnz) if results["sparse"] else None
    results["date"] = dt.date.today().isoformat()
    if args.phase in ("fit", "both"):
        results["fit"] = phase_fit(args.data, args.k, out)
        out.write_text(json.dumps(results, indent=2))
        if args.fixed:
            results["fit_fixed"] = phase_fit(args.data, args.k, out.with_name(out.stem + "_fixed.json"), EVERY_STEP)
            out.write_text(json.dumps(results, indent=2))
    if args.phase in ("references", "both"):
        results["references"] = phase_references(args.data, args.k, args.draws)
        out.write_text(json.dumps(results, indent=2))
    results["peak_rss_mb_this_process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps(results, indent=2))
    report(name, section(name, args.data, args.k, results), write=not args.no_write)
    return 0


def auto_k(args) -> int:
    """``JLEmbedding(n_components="auto", eps=...)`` with every other default: the k it finds,
    each k it tried with its epsilon, and the whole search's wall time."""
    name = f"field_{args.data.stem}_auto_eps{args.auto_eps:g}"
    out = ROOT / "outputs" / "bench" / "field" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    points = load(args.data)
    fit = phase_fit(args.data, "auto", out, eps=args.auto_eps)
    out.write_text(json.dumps({"shape": list(points.shape), "fit": fit}, indent=2))
    tried = ", ".join(f"k={row['k']}: {row['epsilon']:.4f}" for row in fit["k_search"])
    lines = [
        f'### k = "auto" at eps = {args.auto_eps:g}: {args.data.name} ({points.shape[0]} x {points.shape[1]})',
        "",
        f"`python scripts/bench_field.py {args.data} --auto-eps {args.auto_eps:g} --phase fit`; "
        f"{dt.date.today().isoformat()}",
        machine_line(),
        "",
        f'- `JLEmbedding(n_components="auto", eps={args.auto_eps:g}, mode="pairs")`: **k = {fit["k"]}**, training '
        f"epsilon {fit['epsilon']:.4f}, the whole search {fit['fit_seconds'] / 60:.1f} min, "
        f"peak RSS {fit['peak_rss_mb'] / 1024:.2f} GB; the JL bound's k for these n: {fit['jl_bound_k']}",
        f"- tried, in order: {tried}",
    ]
    report(name, lines, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
