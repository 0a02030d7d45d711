"""The run's summary: one callback owns it, so nothing reads other callbacks' internals."""

from __future__ import annotations

import os
import platform
import time

import numpy as np
import torch
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import EarlyStopping

from jl_lightning.io.run_folder import fingerprint
from jl_lightning.lightning.contract import ReadsRunRecord, ReportsResults, RunRecord
from jl_lightning.lightning.distributed import exact_report
from jl_lightning.version import __version__

EXPORTED = "embedding.npy holds the best M / sqrt(k) (shape k x d); y = embedding @ x"


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


class RunSummary(Callback):
    """At the end of the fit, build ``summary`` (what summary.json holds) and ``embedding``
    (the exported (k, d) float64 matrix) from the module and data contracts and from every
    callback that reports results (``contract.ReportsResults``: the tracker's best matrix and
    history, the switch step, the sigma^2 crossings, the references).

    The exported matrix is the tracker's best M / sqrt(k) (chosen on training points), or
    the final one without a tracker. Its held-out reports are computed once: taken from the
    tracker's final evaluation when the best matrix is the final one.

    Then every callback that reads the finished run (``contract.ReadsRunRecord``: recall@K,
    figures, TensorBoard's HParams) gets the :class:`~contract.RunRecord`, in callback order.
    """

    def __init__(self):
        super().__init__()
        self.summary: dict | None = None
        self.embedding: np.ndarray | None = None
        self._started = time.perf_counter()
        self._device: torch.device | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        self._started = time.perf_counter()
        # where the steps run: by on_fit_end Lightning's teardown has moved the module to the CPU
        self._device = pl_module.embedding.device

    def on_fit_end(self, trainer, pl_module) -> None:
        fit_seconds = time.perf_counter() - self._started
        device = self._device or pl_module.embedding.device
        data = trainer.datamodule
        results = collect_results(trainer.callbacks, exclude=self)
        final = results.get("final_report") or exact_report(
            pl_module.embedding, data.points, pl_module.mode, heldout=data.val_points
        )
        embedding, best_eps, best_step = choose_export(results, final, pl_module, trainer.global_step)
        heldout = final.heldout
        if data.val_points is not None and best_step != trainer.global_step:  # the exported matrix's own
            exported = torch.as_tensor(embedding, device=device)
            heldout = exact_report(exported, data.points, pl_module.mode, quantiles=True, heldout=data.val_points)
            heldout = heldout.heldout
        self.embedding = (
            embedding.numpy().astype("float64")
            if isinstance(embedding, torch.Tensor)
            else np.asarray(embedding, dtype=np.float64)
        )
        self.summary = {
            "final_distortion": final.epsilon,
            "best_distortion": best_eps,
            "best_step": best_step,
            "exported": EXPORTED,
            **data_figures(data, pl_module.mode, final),
            "final_report": final.to_dict(),
            "heldout": None if heldout is None else {name: r.to_dict() for name, r in heldout.items()},
            **training_figures(results, pl_module, data),
            "steps": int(trainer.global_step),
            "early_stop": early_stop(trainer),
            "fit_seconds": fit_seconds,
            "k": int(pl_module.k),
            **machine_figures(device),
        }
        if not trainer.is_global_zero:  # recall, the figures and TensorBoard's HParams: once
            return
        record = RunRecord(self.summary, self.embedding, results)
        for callback in trainer.callbacks:
            if callback is not self and isinstance(callback, ReadsRunRecord):
                callback.on_run_record(trainer, pl_module, record)


def early_stop(trainer) -> dict | None:
    """Where Lightning's EarlyStopping ended the run before ``trainer.max_steps``: the step,
    what it watched, its patience (certifications) and min_delta. None: the run took every step."""
    stopper = next((c for c in trainer.callbacks if isinstance(c, EarlyStopping)), None)
    if stopper is None or not trainer.max_steps or trainer.global_step >= trainer.max_steps:
        return None
    if stopper.stopping_reason_message is None:  # stopped by something else (a time limit)
        return None
    return {
        "step": int(trainer.global_step),
        "max_steps": int(trainer.max_steps),
        "monitor": stopper.monitor,
        "patience": int(stopper.patience),
        "min_delta": abs(float(stopper.min_delta)),
    }


def collect_results(callbacks, exclude=None) -> dict:
    """What every callback that reports results (``contract.ReportsResults``) gives, merged."""
    results: dict = {}
    for callback in callbacks:
        if callback is not exclude and isinstance(callback, ReportsResults):
            results.update(callback.run_results())
    return results


def choose_export(results: dict, final, pl_module, step: int):
    """(matrix, its epsilon, its step): the tracker's best matrix when it is at least as good as
    the final one (or was chosen on selection points, where it stands even above the final
    training epsilon), else the final M / sqrt(k)."""
    best = results.get("best_embedding")
    chosen_on_selection = results.get("best_selection") is not None
    if best is not None and (chosen_on_selection or results["best_distortion"] <= final.epsilon):
        return best, results["best_distortion"], results["best_step"]
    return pl_module.embedding.detach().cpu(), final.epsilon, step


def data_figures(data, mode: str, final) -> dict:
    """summary.json's account of the data: its name, fingerprint, scale, sizes and split, and its
    duplicates: ``rows``, the rows identical to an earlier one among all points loaded, and
    ``pairs``, the training pairs the final exact pass (``final``) left out as duplicates by the
    one rule (``core.pairs.far_apart``), the same number as its report's ``zero_distance_pairs``."""
    return {
        "data": data.name,
        # of the training points as the model sees them (validated, scaled)
        "data_fingerprint": getattr(data, "fingerprint", None) or fingerprint(data.points),
        "data_scale": float(getattr(data, "data_scale", 1.0)),
        "mode": mode,
        "n": int(data.points.shape[0]),
        "n_heldout": 0 if data.val_points is None else int(len(data.val_points)),
        # rows of the source held out from training (data.val_fraction, data.split_seed)
        "heldout_rows": None if data.val_points is None else data.val_index.tolist(),
        "duplicates": None
        if data.duplicates is None
        else {"rows": data.duplicates["rows"], "pairs": int(final.zero_distance_pairs)},
        "d": int(data.points.shape[1]),
    }


def training_figures(results: dict, pl_module, data) -> dict:
    """summary.json's account of the training: references, the switch, sigma^2, the histories."""
    references = results.get("references") or {}
    chosen_on_selection = results.get("best_selection") is not None
    return {
        "baseline_gaussian": references.get("gaussian"),
        "references": references,
        "reference_seconds": results.get("reference_seconds"),
        "switch_step": results.get("switch_step"),
        # model=exact: the optimizer's own account (steps by kind, where Algorithm 1 stopped)
        "optimization": pl_module.run_report(),
        # (step, seconds since the start of training, exact epsilon) at every evaluation
        "distortion_history": results.get("distortion_history"),
        "sigma2_final": pl_module.sigma2(),
        # sigma^2 reached exactly 0: the exported matrix is the deterministic result, not the
        # mean of a sampler that was still spreading
        "converged": pl_module.sigma2() == 0.0,
        "sigma2_crossings": results.get("sigma2_crossings"),
        # (step, sigma^2) as logged: densely while it decays (VarianceMonitor)
        "sigma2_history": results.get("sigma2_history"),
        # (step, {held-out figure: epsilon}) at every evaluation with a held-out split
        "heldout_history": results.get("heldout_history"),
        # data.select_fraction: the exported matrix is the one with the lowest epsilon over the
        # pairs that involve a selection point (none of them in the loss, none held out)
        "selection": None
        if not chosen_on_selection
        else {
            "n": int(len(data.select_points)),
            "best": results["best_selection"],
            "rows": data.select_index.tolist(),
            "history": results.get("selection_history"),
        },
        # filled in by RecallAtK when it is configured (callbacks.recall)
        "recall": None,
    }


def machine_figures(device) -> dict:
    """Where and with what the run ran."""
    return {
        "torch_threads": torch.get_num_threads(),
        # where the steps ran: "cpu" or the GPU's name
        "device": _device_name(device),
        # the machine the run ran on, so a report written elsewhere names it
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "jl_lightning_version": __version__,
        "torch_version": torch.__version__,
    }
