"""The multirun table (Algorithm 2's output with model=exact and an eps sweep)."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from jl_lightning.apps.sweep_summary import best_row, collect, markdown


def fake_job(sweep: Path, name: str, overrides: list[str], summary: dict | None) -> None:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), job / ".hydra" / "overrides.yaml")
    if summary is not None:
        (job / "summary.json").write_text(json.dumps(summary))


def test_rows_in_job_order_the_best_marked_and_failed_jobs_listed(tmp_path):
    base = {"sigma2_final": 0.0, "steps": 100, "fit_seconds": 1.0}
    fake_job(tmp_path, "10", ["model.eps=0.7"], {**base, "final_distortion": 0.61, "best_distortion": 0.5})
    fake_job(
        tmp_path,
        "2",
        ["model.eps=0.5"],
        {
            **base,
            "final_distortion": 0.42,
            "best_distortion": 0.41,
            "optimization": {"gradient_steps": 90, "curvature_steps": 3},
        },
    )
    fake_job(tmp_path, "3", ["model.eps=0.3"], None)  # crashed before summary.json
    rows = collect(tmp_path)
    assert [r["job"] for r in rows] == ["2", "3", "10"]
    assert best_row(rows)["overrides"] == "model.eps=0.5"
    text = markdown(rows)
    assert "| 2 (best) | model.eps=0.5 | 0.42 | 0.41 |" in text
    assert "| 3 | model.eps=0.3 | failed: no summary.json" in text
    assert "best: job 2 (model.eps=0.5), lowest best_distortion 0.41 (optimized_metric)" in text


def test_the_sweep_ranks_by_the_optimized_metric_and_jl_train_returns_it(tmp_path):
    """optimized_metric=heldout_pairs_distortion ranks the jobs by the exported matrix's held-out
    epsilon, not by the training one; jl-train returns the same figure to the sweeper."""
    import pytest

    from jl_lightning.apps.sweep_summary import check_metric, metric_value
    from jl_lightning.errors import JLInputError

    def summary(train_eps, heldout_eps):
        return {
            "final_distortion": train_eps,
            "best_distortion": train_eps,
            "mode": "pairs",
            "converged": True,
            "heldout": {"pairs": {"epsilon": heldout_eps}, "cross_pairs": {"epsilon": heldout_eps + 0.1}},
        }

    fake_job(tmp_path, "0", ["model.k=8"], summary(0.30, 0.90))
    fake_job(tmp_path, "1", ["model.k=16"], summary(0.35, 0.60))
    rows = collect(tmp_path)
    assert best_row(rows)["job"] == "0" and best_row(rows, "heldout_pairs_distortion")["job"] == "1"
    assert best_row(rows, "cross_pairs_distortion")["job"] == "1"
    assert metric_value(summary(0.3, 0.9), "heldout_pairs_distortion") == 0.9
    assert metric_value(summary(0.3, 0.9), "cross_pairs_distortion") == pytest.approx(1.0)
    assert metric_value({"best_distortion": 0.3}, "heldout_pairs_distortion") != metric_value({}, "x")  # NaN != NaN
    with pytest.raises(JLInputError, match="needs held-out points"):
        check_metric("heldout_pairs_distortion", 0.0)
    with pytest.raises(JLInputError, match="optimized_metric must be one of"):
        check_metric("recall", 0.2)


def test_the_table_names_what_sets_a_job_apart_and_the_shared_overrides_once(tmp_path):
    base = {"final_distortion": 0.5, "best_distortion": 0.5, "converged": True}
    fake_job(tmp_path, "0", ["optimizer.lr=0.012520653814999465", "experiment=paper", "debug=fast"], base)
    fake_job(tmp_path, "1", ["optimizer.lr=0.060749960734256966", "experiment=paper", "debug=fast"], base)
    text = markdown(collect(tmp_path))
    assert text.startswith("every job: experiment=paper debug=fast\n")
    assert "| 0 (best) | optimizer.lr=0.01252 | 0.5 |" in text and "| 1 | optimizer.lr=0.06075 | 0.5 |" in text
    assert "0.012520653814999465" not in text
    rows = collect(tmp_path)  # the JSON keeps every override whole
    assert rows[0]["overrides"] == "optimizer.lr=0.012520653814999465 experiment=paper debug=fast"


def test_a_job_folder_is_named_after_its_number_and_overrides():
    from jl_lightning.apps.sweep_summary import NAME_LIMIT, job_folder_name

    assert job_folder_name(3, "model.k=8,optimizer.lr=0.01") == "3_model.k=8,optimizer.lr=0.01"
    assert job_folder_name(0, "") == "0"  # nothing set: the number alone
    # a search's 17-digit samples cut to 4 significant digits; integers and short floats kept
    assert job_folder_name(1, "model.loss.active_hard=8192,optimizer.lr=0.012520653814999465") == (
        "1_model.loss.active_hard=8192,optimizer.lr=0.01252"
    )
    assert job_folder_name(2, "optimizer.lr=1.2345678e-05") == "2_optimizer.lr=1.235e-05"
    # a path value would nest folders, a space or quote would need quoting in a shell
    assert job_folder_name(4, "data.source.path=/data/my vecs.npy") == "4_data.source.path=_data_my_vecs.npy"
    long = job_folder_name(5, "x" * 500)
    assert long == "5_" + "x" * NAME_LIMIT and len(long) < 255
    # the number leads, so the sweep's jobs list in job order (10 after 9)
    from jl_lightning.apps.sweep_summary import _job_order

    assert sorted(["10_a=1", "9_a=2", "1"], key=_job_order) == ["1", "9_a=2", "10_a=1"]
