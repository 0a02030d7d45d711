"""Run the real ``jl-train`` for several seeds and recipes; report distortion and wall time.

    python scripts/bench_quality.py                      # default recipe and experiment=paper, seeds 0 1 2
    python scripts/bench_quality.py --recipes default --seeds 0
    python scripts/bench_quality.py --recipes default direct digits_pairs digits_pairs_direct
    python scripts/bench_quality.py --recipes theorem1_trap theorem1

Each run is the command a user types, timed from start to exit (imports included),
in a fresh process, writing its folder under outputs/bench/. The table goes to
stdout and replaces its section of docs/benchmarks.md, with the command, machine and date.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys

from benchlib import machine_line, recipe_arguments, report, run_jl_train, stamp_now

RECIPES = {
    "default": [],
    "paper": ["experiment=paper"],
    # the control of issue 3: sigma^2 = 0 from the start, M from one Gaussian draw
    "direct": ["experiment=direct"],
    "digits_pairs": ["experiment=digits_pairs"],
    "digits_pairs_direct": ["experiment=[digits_pairs,direct]"],
    # Theorem 1: direct optimization from the trap 2 [I | 0] (a), the sampler from M = 0 (b)
    "theorem1_trap": ["experiment=theorem1_trap"],
    "theorem1": ["experiment=theorem1"],
}


def main() -> None:
    args = recipe_arguments(__doc__.splitlines()[0], RECIPES, ["default", "paper"], [0, 1, 2])
    stamp = stamp_now()
    rows = [run_jl_train(r, RECIPES[r], s, stamp, args.extra) for r in args.recipes for s in args.seeds]

    command = "python scripts/bench_quality.py " + " ".join(sys.argv[1:])
    lines = [
        f"### jl-train end to end: distortion and wall time ({dt.date.today().isoformat()})",
        "",
        f"- command: `{command.strip()}` (each row is one `jl-train ... seed=S` process, timed start to exit)",
        machine_line(rows[0]["torch_threads"]),
        "",
        "| recipe | mode | seed | final det. distortion | best | Gaussian mean | Gaussian best of R "
        "| held-out pairs eps | train x held-out eps | switch step | fit s | wall s (whole command) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        b = r["baseline_gaussian"]
        held = r.get("heldout") or {}
        cell = {name: f"{held[name]['epsilon']:.3f}" if name in held else "-" for name in ("pairs", "cross_pairs")}
        lines.append(
            f"| {r['recipe']} | {r.get('mode', 'norms')} | {r['seed']} | {r['final_distortion']:.3g} "
            f"| {r['best_distortion']:.3g} | {b['mean']:.3f} | {b['best']:.3f} (R={b['draws']}) "
            f"| {cell['pairs']} | {cell['cross_pairs']} | {r['switch_step']} "
            f"| {r['fit_seconds']:.1f} | {r['wall']:.1f} |"
        )
    lines.append("")
    for recipe in args.recipes:
        sub = [r for r in rows if r["recipe"] == recipe]
        best = [r["best_distortion"] for r in sub]
        lines.append(
            f"- {recipe}: exported (best) distortion mean {statistics.mean(best):.4g}, "
            f"range {min(best):.4g} to {max(best):.4g}; worst final {max(r['final_distortion'] for r in sub):.3g}; "
            f"median wall {statistics.median(r['wall'] for r in sub):.1f} s"
        )
    lines.append("")
    report("quality:" + "+".join(args.recipes), lines, write=not args.no_write)


if __name__ == "__main__":
    main()
