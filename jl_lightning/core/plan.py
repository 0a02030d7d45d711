"""The settings a sampler's ``auto`` options take, chosen from the data's size and the run's budget.

A user with their own vectors names the data, k and the steps; how the loss finds the worst
pairs, how often it looks again, the learning rate and the smooth max's temperatures follow
from n (training points), d, k and the steps by :func:`choose`, when the fit starts. Every
choice is an ``auto`` value in conf/ (``model.loss.*``, ``model.subspace_penalty``,
``optimizer.lr``); a value set there, on the command line or in an experiment wins.

Two regimes, each the setting measured best at its size (docs/scale.md, docs/benchmarks.md):

* **few pairs** (n (n - 1) / 2 <= ``FEW_PAIRS``, about 2,900 points): an exact pass over all
  pairs costs less than a few steps, so the active set's hard pairs are re-ranked exactly
  every 1 % of the run (at least every ``MIN_REFRESH`` steps); 8192 hard pairs, a log-sum-exp
  max annealed from 0.1 to 1e-4, lr 0.02, and the subspace penalty 0.3 for unseen vectors;
* **many pairs**: an exact pass costs many steps (25 s for 5e9 pairs on 2 cores), so there
  are ten, placed as fractions of the run (closer where M changes fastest, at the start,
  and at the end, so that the last hard pairs belong to an M near the final one), and
  between them every 20 steps the hard pairs become the worst under the current M of the
  last pass's 2^21 worst pairs; the max anneals to 1e-3 (it weighs the near-worst pairs
  together), lr 0.005, 10 samples a step, a cosine schedule that ends a fifteenth past the
  last step, and the tracker certifies at the last step only.

In both, no exact pass runs while M = 0 (``init_mean=zeros``): every pair ties there at
deviation 1 and the pass would report nothing; the hard pairs start as random pairs.

In pairs mode the learning rate is at least ``LR_TRAVEL / steps`` (up to ``LR_CAP``): sigma^2
has to travel from 1 to 0 under a cosine schedule whose mean rate is half the peak, and Adam
moves a parameter by about the rate per step, so a short budget needs a larger rate to reach
the switch. Norms mode keeps the paper's setting, lr 0.01.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

from jl_lightning.constraints import Number, check

AUTO = "auto"
FEW_PAIRS = 2**22
# trainer.max_steps: auto. A step multiplies the points its pairs touch by M: at most n
# rows, two per active pair, each of width d (a sparse row: its mean non-zeros) times k.
# DEFAULT_STEPS steps, fewer where STEP_WORK / (that product) is smaller: the wide real
# set's 5000 steps (12,000 x 1536 -> 128) cost about STEP_WORK, and a
# fit whose steps cost more would spend its extra steps after sigma^2 = 0, where the
# certified epsilon moves little (docs/scale.md, "Steps"); never under MIN_STEPS
DEFAULT_STEPS = 5000
STEP_WORK = 1.2e13
MIN_STEPS = 1000
ACTIVE_HARD = 8192
# model.n_samples: auto where one step's product is over STEP_WORK / DEFAULT_STEPS: each of
# the N sampled matrices repeats that product while sigma^2 > 0, so the noisy phase of a wide
# fit cost more than its deterministic steps; WIDE_SAMPLES draws (docs/scale.md, "Steps")
WIDE_SAMPLES = 2
MIN_REFRESH = 10
# the exact passes of the many-pairs regime, as fractions of the run (measured at 7000 steps
# and 10^5 points as steps 200, 500, 1000, 1700, 2500, 3400, 4300, 5100, 5800, 6400)
PASS_FRACTIONS = tuple(s / 7000 for s in (200, 500, 1000, 1700, 2500, 3400, 4300, 5100, 5800, 6400))
CANDIDATES = 2**21
# early stopping: a run stops once STOP_WINDOW of its steps (at least MIN_PATIENCE
# certifications) have not lowered the best certified epsilon by STOP_MIN_DELTA. The window
# is wide because the temperature and rate schedules end with the run: on real sets the
# certified epsilon stalls for long stretches mid-run, then falls again as the smooth max
# sharpens (docs/benchmarks.md, "Early stopping"), so a narrower window stops too soon
STOP_WINDOW = 0.2
MIN_PATIENCE = 3
STOP_MIN_DELTA = 1e-3
LR_TRAVEL = 6.0
LR_CAP = 0.05
NORMS_LR = 0.01


@dataclass(frozen=True)
class Plan:
    """One regime's values for every ``auto`` option (loss options by their ``model.loss`` names)."""

    regime: str
    active_hard: int
    active_refresh: int | None
    active_refresh_extra: tuple[int, ...]
    active_candidates: int
    active_rescan: int
    smooth_temperature_end: float
    lr: float
    subspace_penalty: float
    n_samples: int
    # the cosine schedule's T_max (steps to reach its minimum)
    lr_horizon: int
    # steps between the tracker's certifications (None: every log_every steps)
    certify_every: int | None
    # early stopping (Lightning's EarlyStopping on the tracked figure, checked at each
    # certification): stop after stop_patience certifications in a row that did not lower the
    # best by stop_min_delta
    stop_patience: int
    stop_min_delta: float

    RUN_FIELDS = (
        "regime",
        "lr",
        "subspace_penalty",
        "n_samples",
        "lr_horizon",
        "certify_every",
        "stop_patience",
        "stop_min_delta",
    )

    def loss_values(self) -> dict[str, Any]:
        values = asdict(self)
        for name in self.RUN_FIELDS:
            values.pop(name)
        values["active_refresh_extra"] = list(self.active_refresh_extra)
        return values


def pair_count(n: int) -> int:
    return n * (n - 1) // 2


def default_steps(work: float) -> int:
    """The training steps of ``trainer.max_steps: auto`` where one step's product is ``work``
    multiply-adds (:func:`step_work`).

    Examples
    --------
    >>> default_steps(step_work(n=12000, width=1536, k=128, active_pairs=18192))
    5000
    >>> default_steps(step_work(n=10000, width=4096, k=256, active_pairs=18192))
    1144
    """
    return int(min(DEFAULT_STEPS, max(MIN_STEPS, STEP_WORK // max(work, 1.0))))


def step_work(*, n: int, width: float, k: int, active_pairs: int | None) -> float:
    """Multiply-adds of one step's product of the points it touches with M: min(n, 2 x
    ``active_pairs``) rows (``n`` when ``active_pairs`` is None) of ``width`` values, k rows of M.

    Examples
    --------
    >>> step_work(n=10000, width=4096, k=256, active_pairs=18192)
    10485760000.0
    """
    touched = n if active_pairs is None else min(n, 2 * active_pairs)
    return max(touched * float(width) * k, 1.0)


def stop_patience(steps: int, certify_every: int) -> int:
    """Certifications in ``STOP_WINDOW`` of ``steps`` steps, one every ``certify_every``."""
    return max(MIN_PATIENCE, math.ceil(STOP_WINDOW * steps / max(int(certify_every), 1)))


def choose(*, mode: str, n: int, d: int, k: int, steps: int, log_every: int = 50, work: float = 0.0) -> Plan:
    """The plan for ``n`` training points of dimension ``d``, ``k`` rows and ``steps`` steps,
    the tracker certifying every ``log_every`` steps where it certifies during the run;
    ``work``: one step's product (:func:`step_work`), which sets the samples per step.

    d and k do not move the regime boundary (it is a count of pairs)."""
    steps = max(int(steps), 1)
    patience = stop_patience(steps, log_every)
    wide = work > STEP_WORK / DEFAULT_STEPS
    if mode != "pairs":
        samples = WIDE_SAMPLES if wide else 20
        return Plan("norms", 2048, 50, (), 0, 20, 1e-4, NORMS_LR, 0.0, samples, steps, None, patience, STOP_MIN_DELTA)
    lr_floor = min(LR_CAP, LR_TRAVEL / steps)
    if pair_count(n) <= FEW_PAIRS:
        refresh = max(MIN_REFRESH, round(steps / 100))
        return Plan(
            "few_pairs", ACTIVE_HARD, refresh, (), 0, 20, 1e-4, max(0.02, lr_floor), 0.3, WIDE_SAMPLES if wide else 20,
            steps, None,
            patience, STOP_MIN_DELTA,
        )  # fmt: skip
    passes = tuple(sorted({max(1, round(f * steps)) for f in PASS_FRACTIONS if round(f * steps) < steps}))
    candidates = min(CANDIDATES, pair_count(n))
    # the cosine reaches 0 a fifteenth past the last step: the steps after the late passes
    # still move M; the tracker certifies at the end only (an exact pass costs many steps)
    horizon = round(steps * 15 / 14)
    # with one certification, at the last step, there is nothing to stop early
    return Plan(
        "many_pairs", ACTIVE_HARD, None, passes, candidates, 20, 1e-3, max(0.005, lr_floor), 0.0,
        WIDE_SAMPLES if wide else 10, horizon, steps,
        1, STOP_MIN_DELTA,
    )  # fmt: skip


def resolve(values: Mapping[str, Any], plan: Plan) -> tuple[dict, dict]:
    """``values`` with each ``auto`` whose key names a field of the plan replaced by the plan's
    value. Returns (resolved values, {key: chosen value})."""
    table = {**plan.loss_values(), **{name: getattr(plan, name) for name in Plan.RUN_FIELDS}}
    resolved, chosen = dict(values), {}
    for key, value in values.items():
        if value == AUTO and key in table:
            resolved[key] = chosen[key] = table[key]
    return resolved, chosen


def describe(plan: Plan, n: int, d: int, k: int, steps: int) -> str:
    """One line for the log: the regime and what it decided."""
    if plan.regime == "norms":
        return f"auto settings for {n} points (norms): lr {plan.lr:g}"
    passes = (
        f"an exact pass every {plan.active_refresh} steps"
        if plan.active_refresh
        else f"{len(plan.active_refresh_extra)} exact passes at steps {list(plan.active_refresh_extra)}"
    )
    rescans = (
        f", rescans of {plan.active_candidates} candidates every {plan.active_rescan} steps"
        if plan.active_candidates
        else ""
    )
    return (
        f"auto settings for {n} points ({pair_count(n):.3g} pairs), d={d}, k={k}, {steps} steps "
        f"[{plan.regime}]: {plan.active_hard} hard pairs, {passes}{rescans}, temperature to "
        f"{plan.smooth_temperature_end:g}, lr {plan.lr:g}, subspace penalty {plan.subspace_penalty:g}"
    )


def johnson_lindenstrauss_min_dim(n: int, eps: float) -> int:
    """The Johnson-Lindenstrauss bound's k for ``n`` points at distortion ``eps``:
    4 ln n / (eps^2 / 2 - eps^3 / 3), as scikit-learn's ``johnson_lindenstrauss_min_dim``
    gives it (data-blind).

    Parameters
    ----------
    n : int
        Number of points.
    eps : float
        Target distortion, in (0, 1).

    Returns
    -------
    int

    Examples
    --------
    >>> johnson_lindenstrauss_min_dim(1797, 0.5)
    359
    """
    return int(4 * math.log(n) / (eps**2 / 2 - eps**3 / 3))


@dataclass(frozen=True)
class KSearch:
    """What ``k: auto`` found: ``k``, the target ``eps``, the JL bound's k for the n points,
    ``tried``: each k fitted, in order, with its training epsilon, and ``reached``: whether
    ``k`` reaches eps (False: even the largest k allowed does not, and it is kept)."""

    k: int
    eps: float
    jl_bound_k: int
    tried: tuple[tuple[int, float], ...]
    reached: bool

    def to_dict(self) -> dict:
        return {
            "k": self.k,
            "eps": self.eps,
            "jl_bound_k": self.jl_bound_k,
            "reached": self.reached,
            "tried": [{"k": k, "epsilon": eps} for k, eps in self.tried],
        }


def check_eps(eps, option: str = "model.eps", k_option: str = "model.k") -> float:
    """The target epsilon of ``k: auto``: a number in (0, 1), else :class:`JLInputError` naming
    ``option`` (default ``"model.eps"``) and ``k_option`` (default ``"model.k"``).

    Examples
    --------
    >>> check_eps(0.5)
    0.5
    """
    what = f"a number in (0, 1), the target epsilon of {k_option}=auto"
    return float(check(option, eps, Number(low=0, high=1, low_open=True, high_open=True, what=what)))


def smallest_k(epsilon_at, *, n: int, d: int, eps: float) -> KSearch:
    """The smallest k in [1, min(d, JL bound)] whose fit reaches a training epsilon <= ``eps``,
    by bisection (epsilon falls as k grows): ``epsilon_at(k)`` fits k rows and returns the
    epsilon. The largest k is fitted first; if it does not reach eps it is kept.

    Parameters
    ----------
    epsilon_at : callable
        ``epsilon_at(k: int) -> float``, one fit's training epsilon.
    n, d : int
        Number of training points and their dimension.
    eps : float
        Target epsilon, in (0, 1).

    Returns
    -------
    KSearch

    Examples
    --------
    >>> smallest_k(lambda k: 2.0 / k, n=1000, d=64, eps=0.25).k  # 2 / k <= 0.25 from k = 8
    8
    """
    bound = johnson_lindenstrauss_min_dim(n, eps)
    tried: list[tuple[int, float]] = []

    def reaches(k: int) -> bool:
        tried.append((k, float(epsilon_at(k))))
        return tried[-1][1] <= eps

    low, high = 0, max(1, min(d, bound))
    reached = reaches(high)
    if reached:
        while high - low > 1:  # invariant: high reaches eps, low does not (0 never does)
            middle = (low + high) // 2
            if reaches(middle):
                high = middle
            else:
                low = middle
    return KSearch(high, float(eps), bound, tuple(tried), reached)
