"""A Hydra callback that tabulates a multirun: one row per job, the best job marked.

After every ``jl-train -m ...`` (and every ``hparams_search=`` search) it reads each job's
``summary.json`` and writes ``sweep_summary.md``, ``sweep_summary.json`` and
``sweep_summary.png`` (epsilon against each swept numeric parameter, ``io/figures.py``)
into the sweep folder, and prints the table.
A sweep over ``model.eps`` with ``model=exact`` is the paper's Algorithm 2: the row with the
smallest final deterministic distortion is its answer (``best``). Jobs that failed (no
summary.json) are listed as such, not silently dropped.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from jl_lightning.errors import JLInputError
from jl_lightning.io.figures import save_png, sweep_plot
from jl_lightning.io.run_folder import atomic_write
from jl_lightning.metrics.distortion import HELDOUT_NAMES, heldout_name

COLUMNS = (
    "final_distortion",
    "best_distortion",
    *HELDOUT_NAMES.values(),
    "recall",
    "converged",
    "sigma2_final",
    "steps",
    "fit_seconds",
)
SUMMARY_NAMES = ("sweep_summary.md", "sweep_summary.json", "sweep_summary.png")


def _overrides(job_dir: Path) -> str:
    path = job_dir / ".hydra" / "overrides.yaml"
    if not path.exists():
        return ""
    return " ".join(str(item) for item in OmegaConf.load(path))


def override_values(overrides: str) -> dict:
    """``key=value`` overrides as a dict, numbers as numbers (YAML's reading of the value)."""

    params = {}
    for item in overrides.split():
        key, sep, value = item.partition("=")
        if not sep or key.startswith(("~", "hydra.")):
            continue
        try:
            params[key.lstrip("+")] = yaml.safe_load(value)
        except yaml.YAMLError:
            params[key.lstrip("+")] = value
    return params


def plot(rows: list[dict], metric: str = "best_distortion"):
    """The sweep's figure (``io.figures.sweep_plot``), or None when no numeric parameter varies."""

    best = best_row(rows, metric)
    jobs = [
        {
            "params": override_values(row["overrides"]),
            metric: row.get(metric),
            "heldout": row.get(heldout_name(row.get("mode", "norms"))),
            "best": row is best,
            "converged": row.get("converged") is not False,
        }
        for row in rows
    ]
    return sweep_plot(jobs, metric)


def heldout_columns(summary: dict) -> dict:
    """The exported matrix's held-out figures under their one name each
    (``metrics.distortion.HELDOUT_NAMES``), its recall@K and its mode (None where absent)."""
    held = summary.get("heldout") or {}
    columns = {name: (held.get(kind) or {}).get("epsilon") for kind, name in HELDOUT_NAMES.items()}
    return {**columns, "recall": (summary.get("recall") or {}).get("learned"), "mode": summary.get("mode")}


FAILURES = ".jl_failed"  # in the sweep folder: one JSON record per job that failed


def record_failure(sweep_dir: str | Path, job: str, overrides: list[str], reason: str) -> None:
    """Note that ``job`` of the sweep failed and why (the sweep summary lists it; a job refused
    at validation has no folder of its own to say so)."""
    folder = Path(sweep_dir) / FAILURES
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"job": str(job), "overrides": " ".join(overrides), "reason": reason}).encode()
    (folder / f"{job}.json").write_bytes(text)


def failures(sweep_dir: str | Path) -> dict[str, dict]:
    """The failure records of a sweep, by job."""
    folder = Path(sweep_dir) / FAILURES
    records = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = json.loads(path.read_text())
            records[str(record["job"])] = record
        except (OSError, ValueError, KeyError):
            continue
    return records


NAME_LIMIT = 200  # characters of overrides in a job folder's name: a file name takes 255
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+-]")
_LONG_FLOAT = re.compile(r"(?<![\w.])(\d+\.\d{5,}(?:e[-+]?\d+)?)(?![\w.])")


def job_folder_name(num, override_dirname: str) -> str:
    """A sweep job's folder: its number, then what its command line set (Hydra's
    ``override_dirname``, with ``hydra.job.config.override_dirname.exclude_keys`` left out),
    so that TensorBoard's run names and a directory listing say which job is which.

    The number keeps names unique and in job order. Long floats (a search's samples) are cut
    to 4 significant digits, anything but letters, digits and ``._=,+-`` becomes ``_`` (a path
    value would otherwise nest folders), and the overrides are cut at :data:`NAME_LIMIT`.
    Hydra lists them sorted by key, every job's own and the sweep's shared ones alike (a job
    cannot tell which were swept); ``exclude_keys`` leaves the usual shared ones out.
    """

    text = _LONG_FLOAT.sub(lambda m: f"{float(m.group(1)):.4g}", str(override_dirname))
    text = _UNSAFE.sub("_", text)[:NAME_LIMIT]
    return f"{num}_{text}" if text else str(num)


def _job_order(name: str):
    number = name.split("_", 1)[0]
    return (int(number) if number.isdigit() else math.inf, name)


def collect(sweep_dir: str | Path) -> list[dict]:
    """One row per job of ``sweep_dir`` (in job order): from its summary.json, or failed, with
    the reason where the job recorded one."""
    sweep_dir = Path(sweep_dir)
    failed = failures(sweep_dir)
    jobs = {p.name: p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()}
    rows = []
    for name in sorted(set(jobs) | set(failed), key=_job_order):
        job = jobs.get(name)
        row = {"job": name, "overrides": _overrides(job) if job else failed[name]["overrides"]}
        summary_path = job / "summary.json" if job else None
        if summary_path is not None and summary_path.exists():
            summary = json.loads(summary_path.read_text())
            row.update({name: summary.get(name) for name in COLUMNS})
            row.update(heldout_columns(summary))
            if summary.get("optimization"):
                row["optimization"] = summary["optimization"]
        else:
            row["failed"] = True
            row["reason"] = failed.get(name, {}).get("reason", "no summary.json")
        rows.append(row)
    return rows


METRICS = ("best_distortion", *HELDOUT_NAMES.values(), "final_distortion")


def check_metric(name: str, val_fraction) -> None:
    """``optimized_metric`` must name one of :data:`METRICS`; a held-out one needs a split."""

    if name not in METRICS:
        raise JLInputError(f"optimized_metric must be one of {', '.join(METRICS)}, got {name!r}")
    if name in HELDOUT_NAMES.values() and not val_fraction:
        raise JLInputError(f"optimized_metric={name} needs held-out points: set data.val_fraction (e.g. 0.2)")


def metric_value(summary: dict, name: str) -> float:
    """The figure ``name`` (:data:`METRICS`) of a run's summary: what jl-train returns to a
    sweeper, what the sweep summary ranks by."""
    value = {**summary, **heldout_columns(summary)}.get(name)
    return float("nan") if value is None else float(value)


def sweeper_value(summary: dict, name: str) -> float:
    """What jl-train returns to a Hydra sweeper: the figure ``name``, or +inf for a run whose
    sigma^2 never reached 0, so that a search never takes it as its best (the sweep summary
    never ranks it best either). NaN would fail the Optuna trial, and a search whose every
    trial failed has no result at all."""
    return float("inf") if summary.get("converged") is False else metric_value(summary, name)


def best_row(rows: list[dict], metric: str = "best_distortion") -> dict | None:
    """The finished job of lowest ``metric`` among those that converged (sigma^2 reached 0):
    a job stopped with sigma^2 > 0 is never the best, whatever its epsilon."""
    finished = [r for r in rows if r.get(metric) is not None and r.get("converged") is not False]
    return min(finished, key=lambda r: r[metric]) if finished else None


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _short_value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def shown_overrides(rows: list[dict]) -> tuple[list[str], list[str]]:
    """(the overrides every job shares, each job's own as it is shown): a row names only what
    sets it apart, numbers to 4 digits (a search's samples have 17)."""
    items = [[item for item in row["overrides"].split() if item] for row in rows]
    shared = [item for item in items[0] if all(item in other for other in items[1:])] if len(items) > 1 else []

    def show(item: str) -> str:
        key, sep, value = item.partition("=")
        return f"{key}={_short_value(override_values(item).get(key.lstrip('+'), value))}" if sep else item

    return shared, [" ".join(show(item) for item in own if item not in shared) for own in items]


def markdown(rows: list[dict], metric: str = "best_distortion") -> str:
    best = best_row(rows, metric)
    shared, shown = shown_overrides(rows) if rows else ([], [])
    extra = ("gradient_steps", "curvature_steps", "stopped_at") if any("optimization" in r for r in rows) else ()
    header = ("job", "overrides") + COLUMNS + extra
    lines = ([f"every job: {' '.join(shared)}", ""] if shared else []) + [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row, own in zip(rows, shown):
        if row.get("failed"):
            reason = row.get("reason", "no summary.json").replace("|", "\\|")
            cells = [row["job"], own, f"failed: {reason}"] + [""] * (len(header) - 3)
        else:
            opt = row.get("optimization") or {}
            mark = " (best)" if row is best else " (NOT CONVERGED)" if row.get("converged") is False else ""
            cells = [row["job"] + mark, own]
            cells += [_cell(row.get(name)) for name in COLUMNS] + [_cell(opt.get(name)) for name in extra]
        lines.append("| " + " | ".join(cells) + " |")
    if best is not None:
        lines.append("")
        own = shown[rows.index(best)] or best["overrides"]
        lines.append(f"best: job {best['job']} ({own}), lowest {metric} {best[metric]:.6g} (optimized_metric)")
    elif any(r.get("converged") is False for r in rows):
        lines += ["", "best: none: no job converged (sigma^2 never reached 0; more trainer.max_steps?)"]
    return "\n".join(lines) + "\n"


class SweepSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        rows = collect(sweep_dir)
        if not rows or (all(row.get("failed") for row in rows) and not failures(sweep_dir)):
            return  # not a jl-train sweep (jl-compare), or nothing ran
        metric = config.get("optimized_metric", "best_distortion")
        text = markdown(rows, metric)
        best = best_row(rows, metric)
        payload = json.dumps({"jobs": rows, "best": best, "optimized_metric": metric}, indent=2).encode() + b"\n"
        atomic_write(sweep_dir / "sweep_summary.json", lambda h: h.write(payload))
        atomic_write(sweep_dir / "sweep_summary.md", lambda h: h.write(text.encode()))
        figure = plot(rows, metric)
        if figure is not None:
            save_png(figure, sweep_dir / "sweep_summary.png")
        print(f"[jl] sweep summary ({sweep_dir / 'sweep_summary.md'}):\n{text}", end="", flush=True)
