"""The default settings beside the recipes, on a real embedding set, digits and the clusters.

    python scripts/make_sentence_embeddings.py --n 100000        # once: outputs/data/sentences_100000.npy
    python scripts/bench_defaults.py --rows digits_default digits_recipe digits_estimator
    python scripts/bench_defaults.py --rows sentences_default --report sentences_default=outputs/bench/RUN

Each row is the command a user types (``jl-train ...``; ``digits_estimator``: ``JLEmbedding``
on the recipe's training split), timed from start to exit, into outputs/bench/STAMP/ROW.
``--report ROW=DIR`` reports a run made already (e.g. under ``/usr/bin/time -v``) instead of
running it. The table goes to stdout and replaces the section ``defaults`` of
docs/benchmarks.md (rows already there and not rerun are kept), with the machine and date.
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
from benchlib import BENCHMARKS, ROOT, entry_command, machine_line, report, stamp_now

SENTENCES = "data=file data.source.path=outputs/data/sentences_100000.npy"
ROWS = {
    "sentences_default": f"{SENTENCES} model.mode=pairs model.k=32 data.val_fraction=0.2",
    "sentences_recipe": f"experiment=clusters_1e5 {SENTENCES}",
    "digits_default": "data=digits model.mode=pairs model.k=16 data.val_fraction=0.2",
    "digits_recipe": "experiment=digits_pairs",
    "digits_estimator": "JLEmbedding(n_components=16, mode='pairs').fit(X[train])",
    "clusters_default": "data=clusters_1e5 model.mode=pairs model.k=32 data.val_fraction=0.2",
    "clusters_recipe": "experiment=clusters_1e5",
}
HEADER = (
    "| row | command | n train | regime | steps | switch | training ε | best Gaussian (draws) | "
    "PCA best-scaled | ε / PCA | ε / Gaussian | held-out pairs (× training) | train × held-out | "
    "recall@10 (PCA) | references s | wall |"
)


def run_row(name: str, stamp: str) -> dict:
    run_dir = ROOT / "outputs" / "bench" / stamp / name
    if name == "digits_estimator":
        return estimator_row(run_dir)
    cmd = entry_command("jl-train") + ROWS[name].split() + [f"hydra.run.dir={run_dir}"]
    began = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return read_run(run_dir, time.perf_counter() - began)


def estimator_row(run_dir: Path) -> dict:
    """JLEmbedding with its defaults on the training split of experiment=digits_pairs (seed 0)."""
    from sklearn.datasets import load_digits

    from jl_lightning import JLEmbedding

    X = load_digits().data
    rng = np.random.default_rng(0)  # the split of data.val_fraction=0.2, split_seed 0 (io/validation.split_indices)
    order = rng.permutation(len(X))
    train = np.sort(order[int(round(0.2 * len(X))) :])
    began = time.perf_counter()
    emb = JLEmbedding(n_components=16, mode="pairs").fit(X[train])
    wall = time.perf_counter() - began
    run_dir.mkdir(parents=True, exist_ok=True)
    emb.save(run_dir / "embedding.npz")
    return {"n": len(train), "best_distortion": emb.training_distortion_, "switch_step": emb.switch_step_,
            "wall": wall, "steps": emb.metadata_.get("steps"), "converged": emb.converged_}  # fmt: skip


def read_run(run_dir: Path, wall: float | None = None) -> dict:
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    if wall is None:  # a run made already: /usr/bin/time -v's log beside it, else the run's own clock
        log = Path(run_dir) / "time-v.log"
        found = (
            re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", log.read_text())
            if log.exists()
            else None
        )
        wall = (
            int(found.group(1) or 0) * 3600 + int(found.group(2)) * 60 + float(found.group(3))
            if found
            else summary["wall_seconds"]
        )
    return {**summary, "wall": wall}


def cell(row: dict) -> dict:
    refs = row.get("references") or {}
    gauss, pca = refs.get("gaussian") or {}, refs.get("pca") or {}
    eps = row["best_distortion"]
    held = (row.get("heldout") or {}).get("pairs")
    cross = (row.get("heldout") or {}).get("cross_pairs")
    recall = row.get("recall") or {}
    auto = row.get("auto_settings") or {}
    return {
        "n": row.get("n", "-"),
        "regime": auto.get("regime", "-"),
        "steps": row.get("steps", "-"),
        "switch": row.get("switch_step", "-"),
        "eps": f"**{eps:.4f}**",
        "gauss": f"{gauss['best']:.3f} ({gauss['draws']})" if "best" in gauss else "-",
        "pca": f"{pca['epsilon_scaled']:.3f}" if "epsilon_scaled" in pca else "-",
        "r_pca": f"{eps / pca['epsilon_scaled']:.2f}×" if "epsilon_scaled" in pca else "-",
        "r_gauss": f"{eps / gauss['best']:.2f}×" if "best" in gauss else "-",
        "held": f"{held['epsilon']:.3f} ({held['epsilon'] / eps:.2f}×)" if held else "-",
        "cross": f"{cross['epsilon']:.3f}" if cross else "-",
        "recall": f"{recall['learned']:.3f} ({recall.get('pca', float('nan')):.3f})" if "learned" in recall else "-",
        "refs": f"{row['reference_seconds']:.0f}" if row.get("reference_seconds") is not None else "-",
        "wall": f"{row['wall'] / 60:.1f} min" if row["wall"] >= 120 else f"{row['wall']:.1f} s",
    }


def line(name: str, row: dict) -> str:
    c = cell(row)
    command = ROWS[name] if name == "digits_estimator" else f"jl-train {ROWS[name]}"
    return (
        f"| {name} | `{command}` | {c['n']} | {c['regime']} | {c['steps']} | {c['switch']} | {c['eps']} | {c['gauss']} "
        f"| {c['pca']} | {c['r_pca']} | {c['r_gauss']} | {c['held']} | {c['cross']} | {c['recall']} | {c['refs']} "
        f"| {c['wall']} |"
    )


def kept_rows() -> dict[str, str]:
    """The rows of the section as it stands, by name (a rerun replaces only its own rows)."""
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else ""
    section = re.search(r"<!-- bench:defaults -->(.*?)<!-- /bench:defaults -->", text, re.S)
    rows = {}
    for row in (section.group(1) if section else "").splitlines():
        parts = [p.strip() for p in row.split("|")]
        if len(parts) > 2 and parts[1] in ROWS:
            rows[parts[1]] = row
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=["digits_default", "digits_recipe"])
    parser.add_argument("--report", nargs="*", default=[], help="ROW=RUN_DIR: report a run made already")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    made = dict(item.split("=", 1) for item in args.report)
    stamp = stamp_now()
    rows = kept_rows()
    for name in args.rows:
        row = read_run(Path(made[name])) if name in made else run_row(name, stamp)
        rows[name] = line(name, row)
        print(rows[name], flush=True)
    lines = [
        f"### Defaults beside the recipes ({dt.date.today().isoformat()})",
        "",
        "- command: `python scripts/bench_defaults.py " + " ".join(sys.argv[1:]) + "` (rows not named were kept "
        "from earlier runs of it; each row's command is in the table, seed 0)",
        machine_line(),
        "- training ε: certified over all training pairs (float64 where it decides); held-out pairs: all pairs of "
        "the 20 % held-out points; train × held-out: every (training, held-out) pair; recall@10 of 1000 held-out "
        "queries against the training points; references s: the reference maps' exact passes; wall: start to exit",
        "- sentences: 100,000 all-MiniLM-L6-v2 embeddings (d = 384) of sentences from the docstrings of installed "
        "third-party packages (`scripts/make_sentence_embeddings.py`; not committed)",
        "",
        HEADER,
        "|" + "---|" * (HEADER.count("|") - 1),
        *[rows[name] for name in ROWS if name in rows],
        "",
    ]
    report("defaults", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
