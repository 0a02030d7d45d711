"""The figures a run and a sweep leave behind, drawn with matplotlib's object API (no
pyplot state, the Agg canvas): plain functions from numbers to a ``Figure``.

* :func:`ratio_histogram`: the distortion ratios of the learned matrix beside the best
  Gaussian draw and PCA, with each map's exact band 1 +- epsilon;
* :func:`training_curves`: epsilon and sigma^2 against steps, the references as horizontal
  lines and the switch to the deterministic mean as a vertical one;
* :func:`sweep_plot`: epsilon against each swept numeric parameter of a multirun;
* :func:`comparison_figure` and :func:`epsilon_against_k`: jl-compare's table and curve.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from jl_lightning.io.run_folder import atomic_write

COLORS = {"learned": "tab:blue", "gaussian": "tab:red", "pca": "tab:green"}
HELDOUT_LABELS = {
    "heldout_points_distortion": "held-out points",
    "heldout_pairs_distortion": "held-out pairs",
    "cross_pairs_distortion": "train x held-out pairs",
}
HELDOUT_COLORS = {
    "heldout_points_distortion": "tab:olive",
    "heldout_pairs_distortion": "tab:cyan",
    "cross_pairs_distortion": "tab:orange",
}


def new_figure(width: float, height: float, rows: int = 1, cols: int = 1, **kwargs):
    """(figure, axes) on an Agg canvas, without pyplot, with fixed margins: tight_layout
    would measure every label before drawing, most of a figure's cost."""
    # lazy: matplotlib loads only when a figure is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False, **kwargs)
    fig.subplots_adjust(
        left=0.9 / width, right=1 - 0.2 / width, bottom=0.55 / height, top=1 - 0.4 / height, wspace=0.3, hspace=0.12
    )
    return fig, axes


def set_log(ax, which: str, values) -> None:
    """A log scale on ``ax``'s ``which`` ("x" or "y") axis whose labels are plain numbers
    (0.01, not mathtext 10^-2, which is slow to lay out), and no minor ticks (each is an
    artist to build; together they were most of a figure's cost). Ticks at 1, 2, 5 x 10^n
    where ``values`` span less than two decades (powers of ten alone could leave none),
    at powers of ten otherwise."""
    # lazy: matplotlib loads only when a figure is drawn
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator  # noqa: PLC0415

    getattr(ax, f"set_{which}scale")("log")
    axis = ax.xaxis if which == "x" else ax.yaxis
    positive = [v for v in values if v > 0]
    narrow = positive and max(positive) / min(positive) < 100
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if narrow else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_locator(NullLocator())


def render(fig, dpi: int = 100) -> tuple[bytes, np.ndarray]:
    """(PNG bytes, (H, W, 3) uint8 pixels) of ``fig`` from one drawing: the pixels are the
    canvas the PNG was encoded from, so a second consumer (TensorBoard) costs no redraw."""

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    return buffer.getvalue(), pixels


def save_png(fig, path: str | Path, dpi: int = 100) -> None:
    """Write ``fig`` as a PNG, atomically (a reader never sees half a file)."""
    write_bytes(path, render(fig, dpi)[0])


def write_bytes(path: str | Path, payload: bytes) -> None:

    atomic_write(Path(path), lambda handle: handle.write(payload))


def ratio_histogram(ratios: dict[str, np.ndarray], epsilons: dict[str, float], title: str, unit: str):
    """Histograms (as fractions) of ``ratios[name]``, one step line per map, on shared bins;
    dashed verticals at 1 +- ``epsilons[name]`` (each map's exact worst case)."""
    fig, axes = new_figure(7.5, 4.2)
    ax = axes[0, 0]
    values = [r for r in ratios.values() if len(r)]
    # a ratio is never negative: the axis starts at 0 at the lowest, though 1 - epsilon < 0
    lo = max(0.0, min(min(float(r.min()) for r in values), *(1 - e for e in epsilons.values()))) if values else 0.0
    hi = max(max(float(r.max()) for r in values), *(1 + e for e in epsilons.values())) if values else 2.0
    edges = np.linspace(lo, hi, 81)
    for name, r in ratios.items():
        color = COLORS.get(name)
        counts, _ = np.histogram(r, bins=edges)
        eps = epsilons.get(name)
        label = name if eps is None else f"{name} (epsilon {eps:.3g})"
        ax.stairs(counts / max(1, len(r)), edges, label=label, color=color, linewidth=1.4)
        if eps is not None:
            for x in (1 - eps, 1 + eps):
                if x >= 0:
                    ax.axvline(x, color=color, linestyle="--", linewidth=0.8)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel(f"ratio ||A v||^2 / ||v||^2 over {unit}")
    ax.set_ylabel("fraction")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return fig


def training_curves(
    distortion: list, heldout: list, sigma2: list, references: dict[str, float], switch_step: int | None, title: str
):
    """Two panels over steps: the exact epsilon (training, and each held-out figure) with
    ``references`` (name -> epsilon) as horizontal lines, and sigma^2 on a log axis; a
    vertical line at ``switch_step`` in both. ``distortion``: (step, seconds, epsilon);
    ``heldout``: (step, {name: epsilon}); ``sigma2``: (step, sigma^2)."""
    fig, axes = new_figure(10.0, 6.0, rows=2, sharex=True)
    top, bottom = axes[0, 0], axes[1, 0]
    _epsilon_panel(top, distortion, heldout, references)
    top.set_title(title, fontsize=9)
    _sigma2_panel(bottom, sigma2, switch_step)
    for ax in (top, bottom):
        if switch_step is not None:
            ax.axvline(
                switch_step, color="black", linestyle=":", linewidth=1, label=f"switch to the mean (step {switch_step})"
            )
        # beside the panel, where it covers no curve and no reference line
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    fig.subplots_adjust(right=1 - 2.6 / fig.get_figwidth())
    return fig


def _epsilon_panel(ax, distortion: list, heldout: list, references: dict[str, float]) -> None:
    """The exact epsilon over steps: training, each held-out figure, the references as lines."""
    shown = []
    if distortion:
        steps, _, eps = zip(*distortion)
        # markers: a run certified only at its end (the tracker's one pass at scale) is a point
        ax.plot(
            steps, eps, color=COLORS["learned"], label="learned (training)", linewidth=1.4, marker="o", markersize=2.5
        )
        shown += eps
    for name in sorted({name for _, held in heldout for name in held}):
        points = [(step, held[name]) for step, held in heldout if name in held]
        color, label = HELDOUT_COLORS.get(name, "gray"), HELDOUT_LABELS.get(name, name)
        ax.plot(*zip(*points), color=color, linestyle="-.", linewidth=1.2, label=label)
        shown += [value for _, value in points]
    for name, value in references.items():
        if value is not None and math.isfinite(value):
            ax.axhline(value, color=COLORS.get(name.split()[0], "gray"), linestyle="--", linewidth=1, label=name)
            shown.append(value)
    ax.set_ylabel("exact epsilon")
    if _spans_decades(shown):  # a flat epsilon (a run that did not converge) keeps linear ticks
        set_log(ax, "y", shown)


def _sigma2_panel(ax, sigma2: list, switch_step: int | None) -> None:
    """sigma^2 over steps on a log axis, its last value before the switch marked."""
    positive = [(step, s2) for step, s2 in sigma2 if s2 > 0]
    if positive:
        ax.plot(*zip(*positive), color="tab:purple", linewidth=1.4, label="sigma^2")
        set_log(ax, "y", [s2 for _, s2 in positive])
        if switch_step is not None:  # where the curve stops, sigma^2 was set to exactly 0
            step, s2 = positive[-1]
            label = f"sigma^2 {s2:.2g} at step {step}, then 0"
            ax.plot([step], [s2], marker="v", color="tab:purple", linestyle="none", label=label)
    ax.set_ylabel("sigma^2 (log; 0 not drawn)")
    ax.set_xlabel("optimizer steps")


def _spans_decades(values: list[float]) -> bool:
    return min(values) > 0 and max(values) / min(values) >= 10


def sweep_plot(jobs: list[dict], metric: str = "final_distortion"):
    """epsilon (``metric``) against each swept numeric parameter, one panel per parameter.

    ``jobs``: {"params": {name: value}, metric: float or None, "best": bool, "converged": bool,
    "heldout": the job's held-out epsilon or None}. In a panel,
    one series per combination of the other parameters' values (a search, where every
    job differs, draws its jobs as points); log axes where the values span a decade or
    more; the best job is a star. None when no parameter is numeric.
    """
    finished = [j for j in jobs if j.get(metric) is not None]
    varying = {
        name
        for j in finished
        for name in j["params"]
        if len({str(other["params"].get(name)) for other in finished}) > 1
    }
    numeric = sorted(
        {
            name
            for j in finished
            for name, value in j["params"].items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and name in varying
        }
    )
    if not numeric:
        return None
    fig, axes = new_figure(4.2 * len(numeric), 3.8, cols=len(numeric))
    fig.suptitle(
        f"sweep: {metric.replace('_', ' ')} of each job"
        + (" (red x: did not converge)" if any(not j.get("converged", True) for j in finished) else ""),
        fontsize=10,
    )
    for ax, name in zip(axes[0], numeric):
        _sweep_panel(ax, finished, name, varying, metric)
    return fig


def _sweep_panel(ax, finished: list[dict], name: str, varying: set, metric: str) -> None:
    """One panel of :func:`sweep_plot`: ``metric`` against parameter ``name``."""
    groups: dict[tuple, list] = {}
    for job in finished:
        if name not in job["params"]:
            continue
        others = tuple(sorted((k, str(v)) for k, v in job["params"].items() if k != name and k in varying))
        groups.setdefault(others, []).append(
            (job["params"][name], job[metric], job.get("best", False), job.get("converged", True))
        )
    as_points = all(len(series) == 1 for series in groups.values())
    for others, series in groups.items():
        series.sort()
        xs, ys, _, _ = zip(*series)
        if as_points:
            ax.scatter(xs, ys, color="tab:blue", s=18)
        else:
            ax.plot(xs, ys, marker="o", markersize=3, label=", ".join(f"{k}={v}" for k, v in others) or None)
    # each job's held-out epsilon (pairs, or points in norms mode) beside the plotted one,
    # where the runs hold points out and the plotted figure is not a held-out one already
    held = [
        (job["params"][name], job["heldout"])
        for job in finished
        if name in job["params"] and job.get("heldout") is not None and not metric.startswith(("heldout_", "cross_"))
    ]
    if held:
        style = dict(marker="s", s=22, facecolor="none", edgecolor="tab:orange")
        ax.scatter(*zip(*held), **style, label="held-out epsilon (same job)")
    _mark_jobs(ax, [s for series in groups.values() for s in series])
    xs_all = [job["params"][name] for job in finished if name in job["params"]]
    ys_all = [job[metric] for job in finished] + [y for _, y in held]
    if _spans_decades(xs_all):
        set_log(ax, "x", xs_all)
    if _spans_decades(ys_all):
        set_log(ax, "y", ys_all)
    ax.set_xlabel(name)
    ax.set_ylabel(metric.replace("_", " "))
    handles, labels = ax.get_legend_handles_labels()
    if labels and len(labels) <= 12:
        ax.legend(fontsize=6)


def _mark_jobs(ax, points: list[tuple]) -> None:
    """The best job as a ringed star, and a red x on each job that did not converge (its
    sigma^2 never reached 0: its epsilon is not a learned matrix's); one legend entry each."""
    marked = set()
    for x, y, best, converged in points:
        if best:
            label = None if "best" in marked else "best job (ringed star)"
            ax.scatter([x], [y], marker="*", s=180, color="gold", edgecolor="black", zorder=5, label=label)
            ax.scatter([x], [y], marker="o", s=420, facecolor="none", edgecolor="black", zorder=4)
            marked.add("best")
        if not converged:
            label = None if "nc" in marked else "not converged (sigma^2 > 0)"
            ax.scatter([x], [y], marker="x", s=90, color="tab:red", zorder=6, label=label)
            marked.add("nc")


def comparison_figure(rows: list[dict], histograms: dict[str, np.ndarray], edges: np.ndarray, title: str):
    """jl-compare's figure: a histogram of the ratios per method (one map each, counts on the
    bins ``edges``) and a bar chart of each row's worst-case epsilon (bar: best; dot: mean)."""
    fig, axes = new_figure(12.0, 4.5, cols=2)
    left, right = axes[0]
    centers = (edges[:-1] + edges[1:]) / 2
    for name, counts in histograms.items():
        total = counts.sum()
        left.plot(centers, counts / total if total else counts, label=name, drawstyle="steps-mid")
    left.axvline(1.0, color="black", linewidth=0.8)
    left.set_xlabel("ratio ||Ax||^2 / ||x||^2")
    left.set_ylabel("fraction")
    left.set_title("distortion ratios (best draw of each method)", fontsize=9)
    left.legend(fontsize=8)
    names = [r["method"] for r in rows]
    right.bar(names, [r["epsilon_best"] for r in rows], color="tab:blue", label="best")
    right.scatter(names, [r["epsilon_mean"] for r in rows], color="tab:red", zorder=3, label="mean over draws")
    right.set_ylabel("worst-case epsilon")
    right.set_title("worst-case epsilon (bar: best draw)", fontsize=9)
    right.tick_params(axis="x", rotation=30)
    right.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(bottom=1.3 / 4.5, top=1 - 0.6 / 4.5)  # room for the rotated method names
    return fig


def epsilon_against_k(records: list[dict], title: str, heldout: str = "heldout_pairs_distortion"):
    """jl-compare's curve: epsilon against k per method (solid: training data; dashed: the
    held-out figure ``heldout`` of each record)."""
    fig, axes = new_figure(7.0, 4.5)
    ax = axes[0, 0]
    for index, method in enumerate(dict.fromkeys(r["method"] for r in records)):
        mine = sorted((r for r in records if r["method"] == method), key=lambda r: r["k"])
        color = f"C{index}"
        ax.plot([r["k"] for r in mine], [r["epsilon"] for r in mine], "o-", color=color, label=method)
        held = [r[heldout] for r in mine]
        if not all(math.isnan(h) for h in held):
            ax.plot([r["k"] for r in mine], held, "x--", color=color, alpha=0.7)
    ax.set_xlabel("k (rows of the map)")
    ax.set_ylabel("worst-case epsilon (solid: training, dashed: held-out)")
    set_log(ax, "y", [r["epsilon"] for r in records if r["epsilon"] > 0])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return fig
