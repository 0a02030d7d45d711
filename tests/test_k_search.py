"""``model.k=auto model.eps=...``: the smallest k whose learned training epsilon reaches eps,
by bisection (core/plan.smallest_k), then the run at that k."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import jl_train

from jl_lightning.apps.train import train
from jl_lightning.core.plan import johnson_lindenstrauss_min_dim, smallest_k

SMALL = [
    "data.source.n=30",
    "data.source.d=16",
    "model.mode=pairs",
    "trainer.max_steps=150",
    "baseline.draws=0",
    "log_every=25",
    "logger=none",
    "~callbacks.run_figures",
    "~callbacks.tensorboard_report",
]


def test_bisection_finds_the_smallest_k_of_a_monotone_epsilon_and_keeps_the_largest_when_none_reaches():
    calls = []

    def epsilon_at(k):
        calls.append(k)
        return 3.0 / k

    search = smallest_k(epsilon_at, n=1000, d=64, eps=0.25)  # 3 / k <= 0.25 from k = 12
    assert search.k == 12 and search.reached and calls[0] == 64
    assert [k for k, _ in search.tried] == calls and len(calls) <= 1 + int(np.ceil(np.log2(64)))
    assert search.jl_bound_k == johnson_lindenstrauss_min_dim(1000, 0.25) and search.jl_bound_k > 64
    never = smallest_k(lambda k: 1.0, n=1000, d=64, eps=0.25)
    assert never.k == 64 and not never.reached and [k for k, _ in never.tried] == [64]
    # the JL bound caps the search where it is below d
    assert smallest_k(lambda k: 0.0, n=10, d=10_000, eps=0.9).tried[0][0] == johnson_lindenstrauss_min_dim(10, 0.9)


def test_jl_train_k_auto_runs_at_the_k_its_search_found(cfg_factory):
    summary, _ = train(cfg_factory(*SMALL, "model.k=auto", "model.eps=0.6"))
    search = summary["k_search"]
    tried = {entry["k"]: entry["epsilon"] for entry in search["tried"]}
    k = search["k"]
    assert summary["k"] == k and search["reached"] and tried[k] <= 0.6
    assert search["tried"][0]["k"] == min(16, johnson_lindenstrauss_min_dim(30, 0.6))
    # the smallest k that reaches eps: every k tried below it does not (a bisection brackets it)
    assert all(eps > 0.6 for kk, eps in tried.items() if kk < k) and (k - 1 in tried or k == 1)
    # the run at k is the search's fit of k again, with the run's writers: the same epsilon
    assert summary["best_distortion"] == tried[k]
    saved = json.loads((Path(summary["run_dir"]) / "k_search.json").read_text())
    assert saved == search


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["model.k=auto"], "model.eps must be a number in (0, 1), the target epsilon of model.k=auto"),
        (["model.k=auto", "model.eps=1.5"], "model.eps must be"),
        (["model.k=0"], "model.k must be"),
        (["model.eps=0.5"], "model.eps=0.5 is the target of model.k=auto"),
    ],
)
def test_k_auto_without_a_usable_eps_is_one_line(tmp_path, args, message):
    proc = jl_train("debug=fast", *args, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
