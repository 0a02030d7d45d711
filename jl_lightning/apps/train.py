"""``jl-train``: the Hydra entry point.

    jl-train                          # default recipe on the paper's data
    jl-train experiment=paper         # the paper's Appendix B, as published
    jl-train -m model.k=10,20,30      # a multirun, one complete folder per job

Everything is built from conf/ (``lightning/fit.py``); this file refuses an occupied run
folder, trains, writes the results and says how the run went.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from jl_lightning.apps.config import CONFIG_DIR
from jl_lightning.errors import JLInputError
from jl_lightning.io.run_folder import check_fresh, write_results


def final_line(summary: dict) -> str:
    """The run's last line: its distortion, the Gaussian reference and the run folder."""
    baseline = summary["baseline_gaussian"]
    reference = "no baseline (baseline.draws=0)" if baseline is None else (
        f"Gaussian N(0,1/k) baseline: mean {baseline['mean']:.3f}, best of {baseline['draws']} {baseline['best']:.3f}")
    return (f"final deterministic distortion {summary['final_distortion']:.3e} "
            f"(best {summary['best_distortion']:.3e}) | {reference} | run folder {summary['run_dir']}")


def train(cfg: DictConfig) -> tuple[dict, dict]:
    """Train one sampler as configured and write the run folder.

    Returns ``(summary, objects)``: summary.json's content, and every object the run built
    (cfg, datamodule, model, trainer, callbacks, loggers).
    """
    from jl_lightning.lightning.fit import fit_from_config

    run_dir = Path(cfg.paths.output_dir)
    check_fresh(run_dir)
    result = fit_from_config(cfg)
    result.summary["run_dir"] = str(run_dir)
    write_results(run_dir, result.embedding, result.summary)
    print(f"[jl] {final_line(result.summary)}", flush=True)
    return result.summary, result.objects


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def _hydra_entry(cfg: DictConfig) -> float:
    try:
        summary, _ = train(cfg)
    except (JLInputError, FileExistsError) as err:
        print(f"jl-train: error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
    return summary["final_distortion"]  # the value a Hydra sweeper minimizes


def main() -> None:
    """Console-script entry (``jl-train``)."""
    _hydra_entry()


if __name__ == "__main__":
    main()
