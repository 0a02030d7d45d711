"""The exact objective g(M, sigma^2) end to end: Hessian descent, PGD and the Adam path.

    python scripts/bench_exact.py                       # every recipe below, seed 0
    python scripts/bench_exact.py --recipes small_hessian small_pgd --seeds 0 1 2

Each row is one real ``jl-train`` process (imports included), its folder under
outputs/bench/. The table goes to stdout and replaces its section of docs/benchmarks.md, with the
command, machine and date. The paper-setup recipes stop at Algorithm 1's own stopping
rule or at trainer.max_time (5 minutes, conf/experiment/exact_paper.yaml).
"""

from __future__ import annotations

import datetime as dt
import sys

from benchlib import machine_line, recipe_arguments, report, run_jl_train, stamp_now

ADAM = ["model.method=adam", "model.variance=log", "model.init_mean=gaussian", "model.init_scale=0.01"]
RECIPES = {
    "small_hessian": ["experiment=exact_small"],
    "small_pgd": ["experiment=exact_small", "model.method=pgd", "trainer.max_steps=20000"],
    "paper_hessian_0.78": ["experiment=exact_paper", "model.eps=0.78"],
    "paper_adam_0.78": ["experiment=exact_paper", "model.eps=0.78", *ADAM],
    "paper_hessian_0.3": ["experiment=exact_paper", "model.eps=0.3"],
    "paper_adam_0.3": ["experiment=exact_paper", "model.eps=0.3", *ADAM],
}


def run(recipe: str, seed: int, stamp: str, extra: list[str]) -> dict:
    row = run_jl_train(recipe, RECIPES[recipe], seed, stamp, ["logger=csv", *extra])
    print(f"{recipe} seed {seed}: {row['final_distortion']:.4g} in {row['wall']:.0f} s", flush=True)
    return row


def main() -> None:
    args = recipe_arguments(__doc__.splitlines()[0], RECIPES, list(RECIPES), [0])
    stamp = stamp_now()
    rows = [run(r, s, stamp, args.extra) for r in args.recipes for s in args.seeds]

    command = "python scripts/bench_exact.py " + " ".join(sys.argv[1:])
    lines = [
        f"### The exact objective: Hessian descent, PGD and Adam ({dt.date.today().isoformat()})",
        "",
        f"- command: `{command.strip()}` (each row is one `jl-train` process, timed start to exit)",
        machine_line(rows[0]["torch_threads"]),
        "- recipes: " + "; ".join(f"{name}: `{' '.join(RECIPES[name])}`" for name in args.recipes),
        "",
        "| recipe | seed | n, d, k | eps | final det. distortion | <= eps | sigma^2 final | steps "
        "| gradient steps | curvature steps | perturbations | stopped by the algorithm at | fit s | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        opt = r.get("optimization") or {}
        eps = opt.get("eps")
        method = opt.get("method")
        stopped = opt.get("stopped_at")
        lines.append(
            f"| {r['recipe']} | {r['seed']} | {r['n']}, {r['d']}, {r['k']} | {eps} | {r['final_distortion']:.4g} "
            f"| {'yes' if eps is not None and r['final_distortion'] <= eps else 'no'} | {r['sigma2_final']:.3g} "
            f"| {r['steps']} | {opt.get('gradient_steps', '-') if method != 'adam' else '-'} "
            f"| {opt.get('curvature_steps', '-') if method == 'hessian' else '-'} "
            f"| {opt.get('perturbations', '-') if method == 'pgd' else '-'} "
            f"| {stopped if stopped is not None else 'no (step or time limit)'} "
            f"| {r['fit_seconds']:.1f} | {r['wall']:.1f} |"
        )
    lines.append("")
    report("exact", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
