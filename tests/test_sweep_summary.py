"""The multirun table (Algorithm 2's output with model=exact and an eps sweep)."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from jl_lightning.io.sweep_summary import best_row, collect, markdown


def fake_job(sweep: Path, name: str, overrides: list[str], summary: dict | None) -> None:
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), job / ".hydra" / "overrides.yaml")
    if summary is not None:
        (job / "summary.json").write_text(json.dumps(summary))


def test_rows_in_job_order_the_best_marked_and_failed_jobs_listed(tmp_path):
    base = {"best_distortion": 0.5, "sigma2_final": 0.0, "steps": 100, "fit_seconds": 1.0}
    fake_job(tmp_path, "10", ["model.eps=0.7"], {**base, "final_distortion": 0.61})
    fake_job(tmp_path, "2", ["model.eps=0.5"], {**base, "final_distortion": 0.42,
                                                 "optimization": {"gradient_steps": 90, "curvature_steps": 3}})
    fake_job(tmp_path, "3", ["model.eps=0.3"], None)  # crashed before summary.json
    rows = collect(tmp_path)
    assert [r["job"] for r in rows] == ["2", "3", "10"]
    assert best_row(rows)["overrides"] == "model.eps=0.5"
    text = markdown(rows)
    assert "| 2 (best) | model.eps=0.5 | 0.42 |" in text
    assert "| 3 | model.eps=0.3 | failed: no summary.json" in text
    assert "best: job 2 (model.eps=0.5), final deterministic distortion 0.42" in text
