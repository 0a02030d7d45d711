"""A Hydra callback that refuses an occupied run folder before Hydra writes anything into it.

Hydra saves ``.hydra/config.yaml`` (and opens the job log) in the run folder before the
task function starts, so a check inside ``jl-train`` itself would come too late: a
refused run would already have replaced the earlier run's saved config. ``on_run_start``
and ``on_multirun_start`` run before any of that.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from jl_lightning.io.run_folder import occupied

class RefuseOccupiedRunDir(Callback):
    def _refuse(self, message: str) -> None:
        program = Path(sys.argv[0]).name or "jl"
        print(f"{program}: error: {message}", file=sys.stderr, flush=True)
        sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        run_dir = Path(str(config.hydra.run.dir))
        found = occupied(run_dir)
        if found:
            self._refuse(f"{run_dir} already holds results of an earlier run ({', '.join(found)}); "
                         "refusing to overwrite them (nothing was written). Choose another hydra.run.dir.")

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(str(config.hydra.sweep.dir))
        if not sweep_dir.is_dir():
            return
        for job_dir in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
            found = occupied(job_dir)
            if found:
                self._refuse(f"{job_dir} already holds results of an earlier sweep ({', '.join(found)}); "
                             "refusing to overwrite them (nothing was written). Choose another hydra.sweep.dir.")
