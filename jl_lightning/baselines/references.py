"""The references a learned matrix is read against, on the same points and in the same mode.

The methods are those of ``registry.REFERENCES``; here they are measured:

* random maps (``random_maps.py``): ``draws`` independent draws of a construction, each
  measured exactly; mean, best and spread of their worst-case epsilon. jl-train's
  reference lines and jl-compare's table both come from :func:`random_draws`.
* PCA: the top-k principal directions of the data (centered, as scikit-learn's PCA),
  plain and with the single scale factor that minimizes the worst-case epsilon
  (:func:`best_scale`);
* other fitted maps (NuMax, on request): fitted once, reported best-scaled.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from jl_lightning.baselines.registry import (
    REFERENCES,
    check_methods,
    pca_matrix,
    random_map,
)
from jl_lightning.core.pairs import DEFAULT_MEMORY_BUDGET
from jl_lightning.metrics.distortion import DistortionReport, best_scale, evaluate  # noqa: F401 (best_scale: re-exported)

REFERENCE_METHODS = ("gaussian", "sparse", "srht", "pca")  # conf/train.yaml's baseline.methods
DRAWS_PER_PASS = 16  # draws measured together: one pass over the data's tiles serves them all


def _on(linear_map, device):
    """A dense matrix moved to ``device`` for its exact pass (None: left where it is); sparse
    matrices and operators (the SRHT) are applied on the CPU."""
    if device is None or not isinstance(linear_map, torch.Tensor) or linear_map.is_sparse:
        return linear_map
    return linear_map.to(device)


# multiply-adds of pairs (or points) times k that the random references may take together
# per method: a count of draws fixed by the command, not by how fast the machine is
REFERENCE_WORK = 2e11


def planned_draws(n: int, k: int, mode: str, draws: int) -> int:
    """How many draws of a random method a run measures: ``draws``, or fewer where their exact
    passes would exceed :data:`REFERENCE_WORK` (n(n-1)/2 pairs or n points, times k, per
    draw), at least 1. The same on every machine for the same data and options."""
    units = n * (n - 1) // 2 if mode == "pairs" else n
    return int(max(1, min(draws, REFERENCE_WORK // max(1, units * k))))


def pass_size(measured: list[tuple[int, float]], seconds_left: float, most: int) -> int:
    """How many maps the next exact pass may measure and still end within ``seconds_left``,
    from the passes ``measured`` so far ((maps, seconds) each), at most ``most``.

    A pass costs about a + b m for m maps: reading the data's tiles once (a) and one product
    per map (b). From passes of one size m only, a pass of m' maps is taken to cost
    t max(1, m' / m): no less than the measured pass when smaller (the reading of the tiles,
    most of the cost at scale, stays), and in proportion when larger (the cost is
    subadditive), so the budget holds either way; from two or more sizes, a and b are fitted
    (least squares, neither below 0)."""
    if not measured:
        return min(1, most)  # the first pass measures one map: its cost sets the next size
    sizes = np.array([m for m, _ in measured], dtype=float)
    times = np.array([t for _, t in measured], dtype=float)
    if len(set(sizes)) < 2:
        m, t = float(sizes[0]), float(times.max())
        if t > seconds_left:
            return 0
        return int(min(most, max(1, math.floor(seconds_left * m / t + 1e-9))))
    b, a = np.polyfit(sizes, times, 1)
    b = max(float(b), 0.0)
    a = max(float(a), float((times - b * sizes).max()), 0.0)  # no pass measured was cheaper than the fit
    if b <= 0:
        return most if a <= seconds_left else 0
    return int(max(0, min(most, math.floor((seconds_left - a) / b + 1e-9))))  # 1e-9: the fit's rounding


def random_draws(method: str, points, k: int, draws: int = 100, seed: int = 0, mode: str = "norms",
                 memory_budget: int = DEFAULT_MEMORY_BUDGET, density="auto", detail: bool = False,
                 budget_s: float | None = None, device=None, riders: list | None = None,
                 clock=time.perf_counter, head: dict | None = None):  # fmt: skip
    """(figures, best map) of ``draws`` independent draws of ``method``.

    ``budget_s``: the seconds the draws may take. The first pass measures one draw; each
    later pass measures as many (up to ``DRAWS_PER_PASS``) as the cost measured so far says
    fit in what is left (:func:`pass_size`), and drawing stops when not one more does;
    ``figures["draws"]`` says how many were measured and ``figures["seconds"]`` what they
    cost. Without a budget, passes of ``DRAWS_PER_PASS``. The draws are the same either way
    (one generator, in order): a budget only decides how many are measured.

    ``figures``: mean, best (smallest) and std of the worst-case epsilon; with ``detail``
    also the multiplicative distortion (mean, and of the best draw), the mean |ratio - 1|
    averaged over draws and the seconds to construct one map. Uses its own generator, so
    it never disturbs training. ``device``: where the dense draws' exact passes run (the
    training device; the draws themselves are made on the CPU, so they do not depend on it).
    ``riders``: more maps measured in the last pass if it has room (a pass serves up to
    ``DRAWS_PER_PASS`` maps for about the cost of one on a CPU); then ``figures["riders"]``
    holds their reports, in order (not JSON: the caller pops it), and else it is absent.
    ``head``: the first draws already measured in a pass shared with other methods
    (:func:`first_pass`): their ``generator`` (positioned after them), ``maps``, ``reports``,
    this method's share of the pass's ``seconds`` and the pass's (maps, seconds).
    """
    if draws <= 0:
        raise ValueError(f"baseline draws must be positive, got {draws}")
    gen = torch.Generator().manual_seed(int(seed)) if head is None else head["generator"]
    d = points.shape[1]
    reports, best_map, best_epsilon, construct, rider_reports = [], None, math.inf, 0.0, []
    measured: list[tuple[int, float]] = []
    began_all = clock()
    start = 0
    if head is not None:
        reports, measured = list(head["reports"]), [head["measured"]]
        best = int(np.argmin([r.epsilon for r in reports]))
        best_map, best_epsilon = head["maps"][best], reports[best].epsilon
        began_all -= head["seconds"]
        start = len(reports)
    while start < draws:
        size = min(DRAWS_PER_PASS, draws - start)
        if budget_s is not None:
            size = pass_size(measured, budget_s - (clock() - began_all), size)
            if size == 0:
                break
        began = time.perf_counter()
        maps = [_on(random_map(method, k, d, gen, density), device) for _ in range(size)]
        construct += time.perf_counter() - began
        last = start + size >= draws
        ride = list(riders or ()) if last and len(maps) + len(riders or ()) <= DRAWS_PER_PASS else []
        began_pass = clock()
        part = evaluate(maps + ride, points, mode, quantiles=False, mean_abs=detail, memory_budget=memory_budget)
        measured.append((len(maps) + len(ride), clock() - began_pass))
        start += size
        if ride:
            rider_reports = part[len(maps) :]
        for linear_map, report in zip(maps, part):
            if report.epsilon < best_epsilon:
                best_map, best_epsilon = linear_map, report.epsilon
            reports.append(report)
    figures = _draw_figures(method, reports, seed, mode, clock() - began_all, construct if detail else None)
    if rider_reports:
        figures["riders"] = rider_reports
    return figures, best_map


def _draw_figures(method: str, reports: list, seed: int, mode: str, seconds: float, construct: float | None) -> dict:
    """Mean, best and spread of the draws' epsilon, and with the construction time
    (``construct``, seconds for all draws) the detail of :func:`random_draws`."""
    eps = np.array([r.epsilon for r in reports])
    figures = {
        "method": method,
        "draws": len(reports),
        "seed": int(seed),
        "mode": mode,
        "mean": float(eps.mean()),
        "best": float(eps.min()),
        "std": float(eps.std()),
        "seconds": seconds,
    }
    if construct is not None:
        mult = np.array([r.multiplicative for r in reports])
        figures.update(
            multiplicative_mean=float(mult.mean()),
            multiplicative_best=float(mult[eps.argmin()]),
            mean_abs_mean=float(np.mean([r.mean_abs for r in reports])),
            construct_seconds=construct / len(reports),
        )
    return figures


def pca_baseline(
    points,
    k: int,
    mode: str = "norms",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    matrix: np.ndarray | None = None,
    device=None,
    report: DistortionReport | None = None,
) -> dict:
    """PCA to k dimensions, plain and with its best single scale. ``matrix``: the
    :func:`pca_matrix` of these points, when the caller already has it. ``device``: where
    its exact pass runs. ``report``: that pass's report, when it was made already (in a
    random method's last pass)."""
    began = time.perf_counter()
    A = pca_matrix(points, k) if matrix is None else matrix
    if report is None:
        if device is not None:
            A = torch.as_tensor(A, device=device)
        report = evaluate(A, points, mode, memory_budget=memory_budget, quantiles=False, mean_abs=False)
    c, eps_scaled = best_scale(report)
    return {
        "method": "pca",
        "mode": mode,
        "epsilon": report.epsilon,
        "scale": c,
        "epsilon_scaled": eps_scaled,
        "seconds": time.perf_counter() - began,
    }


def first_pass(points, k: int, mode: str, methods: list[str], seed: int, memory_budget: int, device, riders) -> dict:
    """One exact pass over the first draw of every random method in ``methods`` and the
    ``riders`` (PCA): under a budget at scale a pass costs about the same for one map or
    several, so the first draws and PCA are measured together instead of one pass each.
    Returns each method's ``head`` for :func:`random_draws` and the riders' reports."""
    d = points.shape[1]
    generators = {method: torch.Generator().manual_seed(int(seed)) for method in methods}
    maps = {method: _on(random_map(method, k, d, generators[method], "auto"), device) for method in methods}
    began = time.perf_counter()
    reports = evaluate(
        list(maps.values()) + list(riders), points, mode, quantiles=False, mean_abs=False, memory_budget=memory_budget
    )
    seconds = time.perf_counter() - began
    count = len(maps) + len(riders)
    heads = {
        method: {"generator": generators[method], "maps": [maps[method]], "reports": [report],
                 "seconds": seconds / len(methods), "measured": (count, seconds)}
        for method, report in zip(methods, reports)
    }  # fmt: skip
    return {"heads": heads, "riders": reports[len(maps) :], "seconds": seconds}


def reference_figures(
    points,
    k: int,
    mode: str = "norms",
    draws: int = 100,
    seed: int = 0,
    methods=REFERENCE_METHODS,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    budget_s: float | None = None,
    best_maps: dict | None = None,
    device=None,
    on_method=None,
) -> dict:
    """Mean / best / std over ``draws`` draws for each random method (fewer at scale, by
    :func:`planned_draws`: the count depends on the command, not on the machine), epsilon
    plain and best-scaled for PCA (left out, with a reason, when k > min(n, d)). ``budget_s``:
    a cap on the seconds the random methods may take together, shared equally (see
    :func:`random_draws`); a draw count it cuts is said in the log and summary.json.
    ``best_maps``: a dict that receives each random method's best draw (as constructed:
    :func:`dense_map` turns it into an array where one is needed) and PCA's best-scaled
    matrix, for figures. ``device``: where the exact passes of the dense maps run (the
    training device). ``on_method(name, figures)``: called as each method is done.

    PCA's exact pass shares a pass with random draws: under a budget, the first draw of every
    random method and PCA are measured in one pass (:func:`first_pass`; at scale a pass costs
    about the same for one map or several, so the budget then holds from the first pass);
    without one, PCA rides in the Gaussian draws' last pass when it has room."""
    out = {}
    methods = check_methods(methods, "baseline.methods")
    draws = planned_draws(points.shape[0], k, mode, draws)
    randoms = [m for m in methods if REFERENCES[m].kind == "random"]
    share = None if budget_s is None or not randoms else budget_s / len(randoms)
    context = {"pca": None, "pca_report": None, "pca_svd_s": 0.0, "shared_with": None, "heads": {}}
    order = list(methods)
    wants_pca = "pca" in order and k <= min(points.shape)
    joint = budget_s is not None and randoms and wants_pca + len(randoms) > 1
    if wants_pca and (joint or "gaussian" in order[: order.index("pca")]):
        began = time.perf_counter()
        context["pca"] = pca_matrix(points, k)
        context["pca_svd_s"] = time.perf_counter() - began
    if joint:
        riders = [] if context["pca"] is None else [_on(torch.as_tensor(context["pca"]), device)]
        shared = first_pass(points, k, mode, randoms, seed, memory_budget, device, riders)
        context["heads"] = shared["heads"]
        if riders:
            context["pca_report"], context["shared_with"] = shared["riders"][0], "first_pass"
    for method in methods:
        out[method] = _reference(method, points, k, mode, draws, seed, memory_budget, share, device, best_maps, context)
        if method in randoms and out[method]["draws"] < draws:  # said in the log and summary.json
            out[method]["cut"] = f"{draws} draws planned, {out[method]['draws']} within baseline.budget_s={budget_s:g}"
        if on_method is not None:
            on_method(method, out[method])
    return out


def _reference(method, points, k, mode, draws, seed, memory_budget, share, device, best_maps, context) -> dict:
    """One method's figures (and its map into ``best_maps``); ``context``: what the methods
    share (PCA's matrix and report, the first pass's heads)."""
    if REFERENCES[method].kind == "fitted" and method != "pca":
        figures = fitted_reference(method, points, k, mode)
        matrix = figures.pop("matrix", None)
        if best_maps is not None and matrix is not None:
            best_maps[method] = matrix
        return figures
    if method == "pca":
        if k > min(points.shape):
            return {"method": "pca", "skipped": f"k={k} > min(n, d)={min(points.shape)}"}
        matrix = pca_matrix(points, k) if context["pca"] is None else context["pca"]
        figures = pca_baseline(
            points, k, mode, memory_budget, matrix=matrix, device=device, report=context["pca_report"]
        )
        if context["pca_report"] is not None:  # its pass is counted in the random draws' seconds
            figures.update(seconds=context["pca_svd_s"] + figures["seconds"], pass_shared_with=context["shared_with"])
        if best_maps is not None:
            best_maps["pca"] = figures["scale"] * matrix
        return figures
    ride = method == "gaussian" and context["pca"] is not None and context["pca_report"] is None
    figures, best = random_draws(
        method, points, k, draws, seed, mode, memory_budget, budget_s=share, device=device,
        riders=[_on(torch.as_tensor(context["pca"]), device)] if ride else None, head=context["heads"].get(method),
    )  # fmt: skip
    if "riders" in figures:
        context["pca_report"], context["shared_with"] = figures.pop("riders")[0], "gaussian"
    if best_maps is not None:
        best_maps[method] = best
    return figures


def fitted_reference(method: str, points, k: int, mode: str, **options) -> dict:
    """A fitted method's best-scaled k-row map (its figures, with ``matrix``), or the reason it
    was skipped (a pairs-only method in norms mode)."""
    reference = REFERENCES[method]
    if reference.pairs_only and mode != "pairs":
        return {"method": method, "skipped": f"{method} preserves pairwise distances: it needs pairs mode"}
    fitted = reference.fit(points, k, **options)
    return {"method": method, **fitted.info, "matrix": fitted.matrix}


def dense_map(linear_map, d: int) -> np.ndarray:
    """A map of ``random_maps.py`` (a dense or sparse tensor, or an SRHT), or an array, as a
    (k, d) float64 array."""
    if isinstance(linear_map, np.ndarray):
        return linear_map.astype(np.float64, copy=False)
    if isinstance(linear_map, torch.Tensor):
        dense = linear_map.to_dense() if linear_map.is_sparse else linear_map
        return dense.detach().double().cpu().numpy()
    return np.asarray(linear_map.apply(torch.eye(d, dtype=torch.float64)).T)


def reference_scalars(references: dict) -> dict[str, float]:
    """Flat ``reference/...`` scalars for loggers: <method>_mean and <method>_best, pca and pca_scaled."""
    scalars = {}
    for method, figures in references.items():
        if method == "pca":
            if "epsilon" in figures:
                scalars["reference/pca"] = figures["epsilon"]
                scalars["reference/pca_scaled"] = figures["epsilon_scaled"]
        elif REFERENCES[method].kind == "fitted":
            if "epsilon_scaled" in figures:
                scalars[f"reference/{method}_scaled"] = figures["epsilon_scaled"]
        else:
            scalars[f"reference/{method}_mean"] = figures["mean"]
            scalars[f"reference/{method}_best"] = figures["best"]
    return scalars
