"""``jl-compare``: every reference construction against each other (and a learned matrix) on one dataset.

    jl-compare                                     # the paper's data, k=30, norms
    jl-compare experiment=digits_pairs             # digits, k=16, all pairs
    jl-compare compare.run=outputs/runs/.../...    # a finished jl-train run: its data, k, mode,
                                                   # and its embedding.npy as the "learned" row
    jl-compare compare.draws=20 compare.methods=[gaussian,srht]
    jl-compare experiment=digits_pairs compare.methods=[gaussian,pca,numax]   # NuMax, pairs only
    jl-compare compare.sweep=outputs/multiruns/.../...   # epsilon against k: one jl-train per k

The data, k and mode come from the same config groups as jl-train (conf/compare.yaml
extends conf/train.yaml), so a comparison sees exactly the points a run trained on.
For each random method, ``compare.draws`` independent draws are measured exactly
(mean and best); PCA (plain and best-scaled) and the learned matrix are single rows.
Columns: worst-case epsilon, multiplicative distortion sqrt(max ratio / min ratio),
mean |ratio - 1|, time to construct one map and time to apply it to all points; then, for
the best map of each row, recall@K of the exact K nearest neighbours (``compare.recall_k``
over ``compare.recall_queries`` seeded queries) and, with a held-out split
(``data.val_fraction``), the exact epsilon on the held-out points (norms) or pairs, and on
the train x held-out pairs.

The run folder (outputs/runs/<date>/<time>_compare) receives comparison.csv,
comparison.md and comparison.png (a histogram of the ratios per method, one draw
each, and a bar chart of the worst-case epsilon).

``compare.sweep`` (a ``jl-train -m model.k=...`` multirun folder) draws epsilon against k:
each finished run's exported matrix beside every method at its k, on the runs' points
(one data set, one mode, one run per k): curve.csv (one row per k and method: training,
held-out and train x held-out epsilon, recall), curve.md (the same as tables against k)
and curve.png.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from jl_lightning.apps.config import CONFIG_PATH, check_run_config, refuse_and_exit, run_hydra_app
from jl_lightning.baselines.references import best_scale, dense_map, random_draws
from jl_lightning.baselines.registry import REFERENCES, check_methods
from jl_lightning.errors import JLInputError, check_finite_matrix
from jl_lightning.io.figures import comparison_figure, epsilon_against_k, render
from jl_lightning.io.run_folder import atomic_write, check_fresh
from jl_lightning.io.validation import validate_k
from jl_lightning.lightning.datamodule import short_fingerprint
from jl_lightning.lightning.fit import build_datamodule
from jl_lightning.metrics.distortion import HELDOUT_NAMES, evaluate, heldout_name
from jl_lightning.metrics.neighbors import original_neighbors, recall_at_k
from jl_lightning.metrics.tiles import to_tensor
from jl_lightning.sparse_rows import SparseRows

log = logging.getLogger("jl_lightning")
COLUMNS = [
    "method",
    "draws",
    "epsilon_mean",
    "epsilon_best",
    "multiplicative_mean",
    "multiplicative_best",
    "mean_abs_mean",
    "construct_seconds",
    "apply_seconds",
    "recall",
    *HELDOUT_NAMES.values(),
]


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def _float32(points):
    """The points in float32, as a user applies a map to them (sparse rows stay sparse)."""
    if isinstance(points, SparseRows):
        return points.astype(np.float32)
    return np.ascontiguousarray(points, dtype=np.float32)


def _apply_seconds(linear_map, points32) -> float:
    """Seconds to embed all points once (float32, as a user applies the map): one product, a
    sparse one for sparse rows (an operator such as the SRHT gets them a dense tile at a time)."""
    operator = hasattr(linear_map, "apply") and not isinstance(linear_map, (np.ndarray, torch.Tensor))
    if isinstance(points32, SparseRows):
        if operator:
            tiles = range(0, len(points32), 4096)
            return _timed(lambda: [linear_map.apply(to_tensor(points32[a : a + 4096], torch.float32)) for a in tiles])[
                1
            ]
        A = np.asarray(linear_map, dtype=np.float32)
        return _timed(lambda: points32.matrix @ A.T)[1]
    X = torch.from_numpy(points32)
    if operator:
        return _timed(lambda: linear_map.apply(X))[1]
    A = torch.as_tensor(np.asarray(linear_map), dtype=torch.float32)
    return _timed(lambda: X @ A.T)[1]


def random_rows(method: str, points, k: int, mode: str, draws: int, seed: int) -> tuple[dict, object]:
    """The table row of a random method over ``draws`` draws, and its best draw (for the histogram)."""

    figures, best = random_draws(method, points, k, draws, seed, mode, detail=True)
    points32 = _float32(points)
    applies = [_apply_seconds(best, points32) for _ in range(min(draws, 10))]
    row = {
        "method": method,
        "draws": draws,
        "epsilon_mean": figures["mean"],
        "epsilon_best": figures["best"],
        "multiplicative_mean": figures["multiplicative_mean"],
        "multiplicative_best": figures["multiplicative_best"],
        "mean_abs_mean": figures["mean_abs_mean"],
        "construct_seconds": figures["construct_seconds"],
        "apply_seconds": float(np.mean(applies)),
    }
    return row, best


def single_row(name: str, matrix, points, mode: str, construct_seconds: float) -> dict:
    report = evaluate(matrix, points, mode, quantiles=False)
    return {
        "method": name,
        "draws": 1,
        "epsilon_mean": report.epsilon,
        "epsilon_best": report.epsilon,
        "multiplicative_mean": report.multiplicative,
        "multiplicative_best": report.multiplicative,
        "mean_abs_mean": report.mean_abs,
        "construct_seconds": construct_seconds,
        "apply_seconds": _apply_seconds(matrix, _float32(points)),
    }


def to_markdown(rows: list[dict], title: str) -> str:
    lines = [
        f"# {title}",
        "",
        "| method | draws | eps mean | eps best | multiplicative mean | multiplicative best "
        "| mean abs(ratio-1) | construct s | apply s | recall | held-out points eps | held-out pairs eps "
        "| train x held-out pairs eps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['draws']} | {r['epsilon_mean']:.4g} | {r['epsilon_best']:.4g} "
            f"| {r['multiplicative_mean']:.4g} | {r['multiplicative_best']:.4g} | {r['mean_abs_mean']:.4g} "
            f"| {r['construct_seconds']:.3g} | {r['apply_seconds']:.3g} | {r['recall']:.3f} "
            + "".join(f"| {r[name]:.4g} " for name in HELDOUT_NAMES.values())
            + "|"
        )
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict], columns: list[str] = COLUMNS) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for r in rows:
        writer.writerow({key: r[key] for key in columns})
    return buffer.getvalue()


def add_unseen_columns(rows: list[dict], row_maps: dict, points, val_points, mode: str, options) -> None:
    """recall@K and the held-out epsilons of each row's map (its best draw for a random method),
    in place; NaN where there is no held-out split or too few points."""

    K, queries, seed = int(options.recall_k), int(options.recall_queries), int(options.seed)
    truth = original_neighbors(points, K, queries, seed) if K and queries and len(points) > K else None
    for row in rows:
        matrix = dense_map(row_maps[row["method"]], points.shape[1])
        row["recall"] = math.nan if truth is None else recall_at_k(matrix, points, K, queries, seed, truth)
        held = {}
        if val_points is not None:
            held = evaluate(matrix, points, mode, quantiles=False, mean_abs=False, heldout=val_points).heldout
        for kind, name in HELDOUT_NAMES.items():  # NaN where the split has no such figure
            row[name] = held[kind].epsilon if kind in held else math.nan


def method_rows(
    points, k: int, mode: str, methods: list[str], options, numax_cache: dict | None = None
) -> tuple[list[dict], dict, dict]:
    """The table rows of ``methods`` (``registry.REFERENCES``) at ``k`` on ``points``; the maps
    for the histograms (by row name) and the map of every row (for the recall and held-out
    columns). A random method is one row over ``options.draws`` draws; a fitted one a plain
    row and a best-scaled one (only the latter when its fit scales it already).
    ``numax_cache``: NuMax's solutions by delta, shared by several k on the same points."""
    draws, seed = int(options.draws), int(options.seed)
    rows, maps, row_maps = [], {}, {}
    for method in methods:
        reference = REFERENCES[method]
        if reference.kind == "random":
            row, best = random_rows(method, points, k, mode, draws, seed)
            rows.append(row)
            maps[method] = row_maps[method] = best
        else:
            own = options.get(method)
            fit_options = OmegaConf.to_container(own, resolve=True) if own is not None else {}
            if method == "numax":
                fit_options["cache"] = numax_cache
            fitted = reference.fit(points, k, **fit_options)
            matrix = fitted.matrix
            if not fitted.scaled:
                rows.append(single_row(method, matrix, points, mode, fitted.seconds))
                row_maps[method] = matrix
                scale, _ = best_scale(evaluate(matrix, points, mode, quantiles=False, mean_abs=False))
                matrix = matrix * scale
            name = f"{method} (best scale)"
            rows.append(single_row(name, matrix, points, mode, fitted.seconds))
            maps[name] = row_maps[name] = matrix
            if fitted.info:
                log.info(
                    "%s: %s",
                    method,
                    ", ".join(
                        f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}"
                        for key, value in fitted.info.items()
                        if key in ("delta", "rank", "solves", "seconds", "bound", "attained", "rounds")
                    ),
                )
        log.info(
            "k=%d %s: eps mean %.4g, best %.4g",
            k,
            rows[-1]["method"],
            rows[-1]["epsilon_mean"],
            rows[-1]["epsilon_best"],
        )
    return rows, maps, row_maps


def _run_config(run_dir: Path) -> tuple[DictConfig, dict]:
    config_path, summary_path = run_dir / ".hydra" / "config.yaml", run_dir / "summary.json"
    if not (config_path.is_file() and summary_path.is_file() and (run_dir / "embedding.npy").is_file()):
        raise JLInputError(
            f"compare.run={run_dir} is not a finished jl-train run folder "
            "(expected .hydra/config.yaml, summary.json and embedding.npy)"
        )
    saved = OmegaConf.load(config_path)
    check_run_config(saved, f"compare.run={run_dir}")  # a run folder is input: its shape and targets checked
    return saved, json.loads(summary_path.read_text())


def check_same_data(option: str, summary: dict, datamodule) -> None:
    """Refuse to compare a run against data other than its own (its data file changed since)."""

    saved = summary.get("data_fingerprint")
    if saved is not None and saved != datamodule.fingerprint:
        raise JLInputError(
            f"{option}: the data changed since the run: {datamodule.name} now gives "
            f"{short_fingerprint(datamodule.fingerprint)}, the run trained on "
            f"{short_fingerprint(saved)}; compare it on the data it was trained on"
        )


def _methods(options, mode: str | None = None) -> list[str]:
    """compare.methods, checked against the registry and the mode (and compare.draws with them)."""
    if int(options.draws) <= 0:
        raise JLInputError(f"compare.draws must be a positive integer, got {options.draws}")
    return check_methods(options.methods, "compare.methods", mode)


def compare(cfg: DictConfig) -> list[dict]:
    """Build the table as configured, write the three files into the run folder, return the rows."""

    out_dir = Path(cfg.paths.output_dir)
    check_fresh(out_dir)
    methods = _methods(cfg.compare)

    data_cfg, k, mode, learned = cfg.data, cfg.model.k, cfg.model.mode, None
    if cfg.compare.run:
        run_dir = Path(str(cfg.compare.run)).expanduser()
        run_cfg, summary = _run_config(run_dir)
        data_cfg, k, mode = run_cfg.data, run_cfg.model.k, summary.get("mode", run_cfg.model.get("mode", "norms"))
        matrix_path = run_dir / "embedding.npy"
        learned = (
            check_finite_matrix(np.load(matrix_path, allow_pickle=False), str(matrix_path)),
            float(summary.get("fit_seconds", math.nan)),
        )
    datamodule = build_datamodule(data_cfg)
    if cfg.compare.run:
        check_same_data(f"compare.run={run_dir}", summary, datamodule)
    points = datamodule.points
    k = validate_k(k, points.shape[1])
    title = f"{datamodule.source.name}: n={len(points)}, d={points.shape[1]}, k={k}, {mode}"
    log.info("comparing on %s", title)

    check_methods(methods, "compare.methods", mode)
    rows, maps, row_maps = method_rows(points, k, mode, methods, cfg.compare)
    if learned is not None:
        matrix, fit_seconds = learned
        if matrix.shape != (k, points.shape[1]):
            raise JLInputError(
                f"{cfg.compare.run}: embedding.npy has shape {matrix.shape}, expected ({k}, "
                f"{points.shape[1]}) for the run's data"
            )
        rows.append(single_row("learned (jl-train)", matrix, points, mode, fit_seconds))
        maps["learned (jl-train)"] = row_maps["learned (jl-train)"] = matrix
    add_unseen_columns(rows, row_maps, points, datamodule.val_points, mode, cfg.compare)

    top = min(3.0, max(r["epsilon_best"] for r in rows) + 1.0)
    edges = np.linspace(0.0, top, 61)
    histograms = {
        name: evaluate(m, points, mode, quantiles=False, mean_abs=False, histogram=edges).histogram
        for name, m in maps.items()
    }

    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(rows, title)
    atomic_write(out_dir / "comparison.csv", lambda h: h.write(to_csv(rows).encode()))
    atomic_write(out_dir / "comparison.md", lambda h: h.write(markdown.encode()))
    png = render(comparison_figure(rows, histograms, edges, title), dpi=110)[0]
    atomic_write(out_dir / "comparison.png", lambda h: h.write(png))
    print(markdown, flush=True)
    print(f"[jl-compare] wrote comparison.csv, comparison.md and comparison.png to {out_dir}", flush=True)
    return rows


CURVE_COLUMNS = ["k", "method", "epsilon", *HELDOUT_NAMES.values(), "recall", "run"]


def _sweep_runs(sweep_dir: Path) -> list[tuple[Path, DictConfig, dict]]:
    """The finished jl-train runs below ``sweep_dir``, by k; one data set, one mode, one run per k."""
    if not sweep_dir.is_dir():
        raise JLInputError(f"compare.sweep={sweep_dir}: no such folder (expected a jl-train multirun folder)")
    runs = [(run_dir, *_run_config(run_dir)) for run_dir in sorted(p.parent for p in sweep_dir.rglob("summary.json"))]
    if not runs:
        raise JLInputError(
            f"compare.sweep={sweep_dir}: no finished jl-train run below it (expected folders "
            "with .hydra/config.yaml, summary.json and embedding.npy)"
        )
    first_dir, first_cfg, first = runs[0]
    by_k: dict[int, Path] = {}
    for run_dir, run_cfg, summary in runs:
        if summary.get("data_fingerprint") != first.get("data_fingerprint") or summary.get("mode") != first.get("mode"):
            raise JLInputError(
                f"compare.sweep: {run_dir} trained on other data or another mode than {first_dir}; "
                "a curve needs one data set and one mode (sweep model.k alone)"
            )
        k = int(summary["k"])
        if k in by_k:
            raise JLInputError(
                f"compare.sweep: k={k} appears in {by_k[k]} and {run_dir}; a curve takes one run "
                "per k (sweep model.k alone)"
            )
        by_k[k] = run_dir
    return sorted(runs, key=lambda run: int(run[2]["k"]))


def curve_markdown(records: list[dict], title: str) -> str:
    """Tables of epsilon (training pairs or points), held-out epsilon and recall against k,
    one column per method."""
    methods = list(dict.fromkeys(r["method"] for r in records))
    ks = sorted({r["k"] for r in records})
    value = {(r["k"], r["method"]): r for r in records}
    lines = [f"# {title}", ""]
    for key, label in (
        ("epsilon", "epsilon on the training data"),
        ("heldout_points_distortion", "epsilon on the held-out points"),
        ("heldout_pairs_distortion", "epsilon on the held-out pairs"),
        ("cross_pairs_distortion", "epsilon on train x held-out pairs"),
        ("recall", "recall@K"),
    ):
        if all(math.isnan(r[key]) for r in records):
            continue
        lines += [f"## {label}", "", "| k | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
        for k in ks:
            cells = [f"{value[(k, m)][key]:.4f}" if (k, m) in value else "" for m in methods]
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def curve(cfg: DictConfig) -> list[dict]:
    """Epsilon against k: every finished jl-train run of the multirun ``compare.sweep`` (one per
    k) beside ``compare.methods`` at the same k on the same points; writes curve.csv, curve.md
    and curve.png into the run folder and returns one record per (k, method)."""

    out_dir = Path(cfg.paths.output_dir)
    check_fresh(out_dir)
    methods = _methods(cfg.compare)
    sweep_dir = Path(str(cfg.compare.sweep)).expanduser()
    runs = _sweep_runs(sweep_dir)
    mode = runs[0][2]["mode"]
    check_methods(methods, "compare.methods", mode)
    datamodule = build_datamodule(runs[0][1].data)
    check_same_data(f"compare.sweep={sweep_dir}", runs[0][2], datamodule)
    points = datamodule.points
    title = f"{datamodule.source.name}: n={len(points)}, d={points.shape[1]}, {mode}, k = " + ", ".join(
        str(run[2]["k"]) for run in runs
    )
    log.info("epsilon against k on %s", title)
    records, numax_cache = [], {}
    for run_dir, _, summary in runs:
        k = int(summary["k"])
        matrix_path = run_dir / "embedding.npy"
        matrix = check_finite_matrix(np.load(matrix_path, allow_pickle=False), str(matrix_path))
        if matrix.shape != (k, points.shape[1]):
            raise JLInputError(f"{matrix_path}: shape {matrix.shape}, expected ({k}, {points.shape[1]})")
        rows, _, row_maps = method_rows(points, k, mode, methods, cfg.compare, numax_cache)
        rows.insert(0, single_row("learned (jl-train)", matrix, points, mode, float(summary.get("fit_seconds", 0))))
        row_maps["learned (jl-train)"] = matrix
        add_unseen_columns(rows, row_maps, points, datamodule.val_points, mode, cfg.compare)
        for row in rows:
            if row["method"] == "pca":  # the plain PCA map: its best-scaled row is the fair one
                continue
            records.append(
                {
                    "k": k,
                    "method": row["method"],
                    "epsilon": row["epsilon_best"],
                    **{name: row[name] for name in HELDOUT_NAMES.values()},
                    "recall": row["recall"],
                    "run": str(run_dir),
                }
            )
        log.info("k=%d: learned %.4f", k, rows[0]["epsilon_best"])
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown = curve_markdown(records, title)
    atomic_write(out_dir / "curve.csv", lambda h: h.write(to_csv(records, CURVE_COLUMNS).encode()))
    atomic_write(out_dir / "curve.md", lambda h: h.write(markdown.encode()))
    png = render(epsilon_against_k(records, title, heldout_name(mode)), dpi=110)[0]
    atomic_write(out_dir / "curve.png", lambda h: h.write(png))
    print(markdown, flush=True)
    print(f"[jl-compare] wrote curve.csv, curve.md and curve.png to {out_dir}", flush=True)
    return records


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="compare")
def _hydra_entry(cfg: DictConfig) -> None:
    try:
        if cfg.compare.get("sweep") and cfg.compare.run:
            raise JLInputError(
                "compare.run and compare.sweep: give one (a run folder, or a multirun folder for the curve against k)"
            )
        curve(cfg) if cfg.compare.get("sweep") else compare(cfg)
    except Exception as err:
        refuse_and_exit("jl-compare", cfg.paths.output_dir, err)


def main() -> None:
    """Console-script entry (``jl-compare``)."""
    run_hydra_app("jl-compare", _hydra_entry, "compare")


if __name__ == "__main__":
    main()
