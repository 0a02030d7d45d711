"""The written contract between the LightningModule, the DataModule and the callbacks.

A callback may use exactly what is listed here, and what Lightning itself offers on the
trainer (``global_step``, ``max_steps``, ``loggers``, ``datamodule``, ``should_stop``,
``callbacks``, ``is_global_zero``). In a distributed run (``trainer=ddp``) every rank runs
every callback: an exact figure goes through ``sharding.exact_report`` (all ranks call it
at the same step), and what is measured or written once (references, figures,
TensorBoard's HParams, progress lines) happens where ``trainer.is_global_zero``.
``tests/test_callbacks.py`` runs every callback against minimal objects that have only this
contract, so a callback that reaches further fails there.

The module (:class:`JLModule`, implemented by ``module.BaseJLModule``):

* ``k``, ``dim``, ``mode`` (``"norms"`` or ``"pairs"``);
* ``embedding``: the deterministic matrix M / sqrt(k), a detached (k, d) tensor on the
  module's device (callbacks run their exact passes there);
* ``deterministic``: True once sigma^2 is frozen at exactly 0;
* ``sigma2()``: sigma^2 as a Python float (cheap: callbacks read it every step);
* ``freeze_variance()``: set sigma^2 to exactly 0 for good (the switch to the mean);
* ``run_report()``: a dict for summary.json's ``optimization`` entry, or None;
* ``log_dict(metrics, ...)``: Lightning's own logging, used with ``logger=False`` for what
  the progress bar and checkpointing read; scalars for the loggers go through
  ``log_schedule.log_at`` (the trainer's ``loggers``), each under the step of its matrix.
  A sampler with exact passes puts each pass's certified epsilon in the trainer's
  ``callback_metrics`` under ``PASS_EPSILON`` (the progress line shows it where the tracker
  certifies only at the end).

The data (:class:`JLData`, implemented by ``datamodule.JLDataModule`` after ``setup``):

* ``points``: the training points as a float64 (n, d) numpy array, exactly the points
  training sees (after validation, centering and normalization);
* ``val_points``: the held-out points, or None; ``val_index``: their rows in the source;
* ``name``: the source's description; ``duplicates``: repeated rows found in pairs mode;
* ``data_scale``: what the source's points were divided by (1 when normalized).
* optionally ``fingerprint``: sha256 of ``points``, computed once (summary.json's
  ``data_fingerprint``; read with ``getattr``);
* optionally ``select_points``: training points kept out of the loss to choose the exported
  matrix (``data.select_fraction``); read with ``getattr(data, "select_points", None)``.

The batch: training is full-batch, and the DataModule hands the module the same tensor
every step, so the module prepares its loss for a batch once and reuses it while that
tensor comes back.

A callback whose findings belong in the run's summary implements :class:`ReportsResults`;
the ``RunSummary`` callback gathers them at the end of the fit. A callback that works from
the finished run (figures, TensorBoard's HParams) implements :class:`ReadsRunRecord`:
``RunSummary`` hands it a :class:`RunRecord` once the summary is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import torch

# TensorBoard tags. TensorBoard's Scalars tab lists the tag groups (what comes before the first
# "/") in alphabetical order and opens only the first two: the numbered groups put the
# learned map's exact epsilon (training, held-out, each exact pass) and sigma^2 there, before
# the loss (train/), the learning rate, the references and the hp/ metrics.
EPSILON = "1_distortion/train"  # the tracker's exact epsilon (also in callback_metrics)
PASS_EPSILON = "1_distortion/pass"  # an exact pass's certified epsilon (also in callback_metrics)
SELECT_EPSILON = "1_distortion/select"  # the selection points' epsilon (data.select_fraction)
SIGMA2 = "2_variance/sigma2"
LOG10_SIGMA2 = "2_variance/log10_sigma2"
SIGMA2_DECAY = "2_variance/decay"
SWITCH_MARKER = "2_variance/deterministic"  # 0 while sampling, 1 from the switch on


# The held-out figures' tags (keys: ``metrics.distortion.HELDOUT_NAMES``' values, the names
# summary.json, the hp/ metrics and the sweep table use). Inside the group they sort after
# ``pass``, ``select`` and ``train``: the HParams table's metric columns are the tags in
# alphabetical order and it shows three at 1920 px, so the final training epsilon and the
# held-out pairs' come into view without a scroll. ``val_`` as in ``data.val_fraction``.
HELDOUT_TAGS = {
    "heldout_pairs_distortion": "1_distortion/val_pairs",
    "heldout_points_distortion": "1_distortion/val_points",
    "cross_pairs_distortion": "1_distortion/val_train_pairs",
}


def heldout_tag(name: str) -> str:
    """The TensorBoard tag of a held-out figure (``metrics.distortion.HELDOUT_NAMES``' values)."""
    return HELDOUT_TAGS[name]


@runtime_checkable
class JLModule(Protocol):
    k: int
    dim: int
    mode: str

    @property
    def embedding(self) -> torch.Tensor: ...

    @property
    def deterministic(self) -> bool: ...

    def sigma2(self) -> float: ...

    def freeze_variance(self) -> None: ...

    def run_report(self) -> dict | None: ...

    def log_dict(self, dictionary, *args, **kwargs) -> None: ...


@runtime_checkable
class JLData(Protocol):
    points: np.ndarray
    val_points: np.ndarray | None
    val_index: np.ndarray | None
    duplicates: dict | None
    data_scale: float

    @property
    def name(self) -> str: ...


@runtime_checkable
class ReportsResults(Protocol):
    def run_results(self) -> dict:
        """Entries for summary.json (plain JSON values, or tensors/arrays named in RunSummary)."""
        ...


@dataclass
class RunRecord:
    """The finished run: ``summary`` (summary.json's content), ``embedding`` (the exported
    (k, d) float64 matrix) and ``results`` (everything the ReportsResults callbacks gave,
    including what summary.json leaves out, such as ``reference_maps``)."""

    summary: dict
    embedding: np.ndarray
    results: dict = field(default_factory=dict)


@runtime_checkable
class ReadsRunRecord(Protocol):
    def on_run_record(self, trainer, pl_module, record: RunRecord) -> None:
        """Called once at the end of the fit, after the summary is built."""
        ...
