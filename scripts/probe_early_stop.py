"""Where would early stopping have stopped these runs? Replays Lightning's EarlyStopping rule
(stop after ``patience`` certifications in a row that do not lower the best by ``min_delta``)
on the certified-epsilon history of finished runs (summary.json's distortion_history), for a
grid of patience and min_delta: the step it stops at, and the epsilon of the best matrix by
then against the run's own final best. Runs trained with every step
(``callbacks.early_stopping=null``) are what it reads: the schedules do not depend on where a
run stops, so truncating the history is exactly the run that stops there.

    python scripts/probe_early_stop.py outputs/runs/<date>/<run> [...] --patience 0.1 0.2 --min-delta 1e-3
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def replay(history, patience: int, min_delta: float) -> int:
    """The step at which the rule stops (the last step if it never does)."""
    best, wait = math.inf, 0
    for step, _, eps in history:
        if eps < best - min_delta:
            best, wait = eps, 0
        else:
            wait += 1
            if wait >= patience:
                return step
    return history[-1][0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--patience", type=float, nargs="+", default=[0.1, 0.2], help="fractions of the run")
    parser.add_argument("--min-delta", type=float, nargs="+", default=[1e-3])
    args = parser.parse_args(argv)
    print("| run | patience (fraction of the run) | min_delta | stops at | best epsilon by then | vs every step |")
    print("|---|---|---|---|---|---|")
    for run in args.runs:
        summary = json.loads((run / "summary.json").read_text())
        history, steps, final = summary["distortion_history"], summary["steps"], summary["best_distortion"]
        period = history[1][0] - history[0][0] if len(history) > 1 else steps
        for fraction in args.patience:
            patience = max(3, math.ceil(fraction * steps / period))
            for delta in args.min_delta:
                stop = replay(history, patience, delta)
                best = min(eps for step, _, eps in history if step <= stop)
                print(f"| {run.name} | {fraction:g} ({patience}) | {delta:g} | {stop} of {steps} | {best:.4f} | "
                      f"{100 * (best / final - 1):+.2f} % |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
