"""The LightningDataModule: validated points (unit-norm in norms mode), served full batch.

It implements the data side of the written contract (``contract.py``): after ``setup``,
``points`` (float64 numpy, or :class:`SparseRows` for sparse data: what exact evaluation
reads), ``val_points`` / ``val_index``, ``name`` and ``duplicates``; training gets
``train_points``, their float32 tensor, moved to the device once (sparse rows stay sparse,
on the CPU).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
from lightning.pytorch import LightningDataModule

from jl_lightning.errors import DuplicatePointsWarning, JLInputError
from jl_lightning.io.run_folder import fingerprint
from jl_lightning.io.validation import duplicate_rows, split_indices, validate_points
from jl_lightning.metrics.heartbeat import Heartbeat
from jl_lightning.sparse_rows import SparseRows

log = logging.getLogger("jl_lightning")
NORMALIZE_CHOICES = ("auto", True, False)


def short_fingerprint(value: str) -> str:
    """``sha256:`` and the first 16 hex digits: enough to tell two data sets apart in a message."""
    return value[: len("sha256:") + 16] + "…" if value.startswith("sha256:") else value


class FullBatchLoader:
    """Yields the whole (n, d) tensor of points ``length`` times.

    One epoch is the whole run (``trainer.max_steps`` steps), so Lightning's
    per-epoch work happens once, and every step sees every point. A plain sized
    iterable rather than a torch DataLoader: index sampling and collation would be
    work for nothing when the batch is always the same tensor.
    """

    def __init__(self, points: torch.Tensor, length: int):
        self.points = points
        self.length = length
        self.served = 0  # batches handed out in this pass; a resumed run skips them

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        start, self.served = self.served, 0
        for _ in range(start, self.length):
            self.served += 1
            yield self.points

    def state_dict(self) -> dict:
        """Lightning's stateful-loader interface: a resumed run continues where this one stopped."""
        return {"served": self.served}

    def load_state_dict(self, state_dict: dict) -> None:
        self.served = int(state_dict.get("served", 0))


class JLDataModule(LightningDataModule):
    """Supplies the points to embed.

    Parameters
    ----------
    source:
        An object with ``load()`` and ``name`` (``GaussianPoints``, ``FilePoints``, ``DigitsPoints``).
    normalize:
        ``"auto"`` (default): scale every point to unit norm in norms mode (the paper's
        setting) and leave the points as they are in pairs mode, where a per-point
        rescaling would change the distances to preserve (and one global scale does
        not matter: the ratio is scale-free). ``True``/``False`` force it.
    mode:
        ``"norms"`` or ``"pairs"``, the model's mode (``${model.mode}`` in the config):
        it decides what ``auto`` normalization does and which checks apply.
    center:
        Subtract the mean point first (pair distances do not change; norms do).
    val_fraction:
        Fraction of the points held out, never seen by training (seeded by ``split_seed``).
    select_fraction:
        Fraction of the remaining (training) points kept out of the loss to choose the
        exported matrix: the tracker keeps the matrix with the lowest epsilon over every
        pair that involves one of them (``select_points``; seeded by ``split_seed + 1``).
        The held-out points never take part.

    After :meth:`setup`, ``points`` is the validated float64 numpy array of the training
    points, used for exact evaluation, ``train_points`` its float32 tensor used for
    training, and ``val_points`` the held-out points (None without a split);
    ``train_index``/``val_index`` are their rows in the source.
    """

    def __init__(
        self,
        source,
        normalize="auto",
        mode: str = "norms",
        center: bool = False,
        val_fraction: float = 0.0,
        split_seed: int = 0,
        select_fraction: float = 0.0,
    ):
        super().__init__()
        if normalize not in NORMALIZE_CHOICES:
            raise JLInputError(f"data.normalize must be auto, true or false, got {normalize!r}")
        if mode not in ("norms", "pairs"):
            raise JLInputError(f"model.mode (data.mode follows it) must be norms or pairs, got {mode!r}")
        self.source = source
        self.mode = mode
        self.normalize = (mode == "norms") if normalize == "auto" else bool(normalize)
        self.center = bool(center)
        self.val_fraction = val_fraction
        self.select_fraction = select_fraction
        self.split_seed = int(split_seed)
        self.select_points: np.ndarray | None = None
        self.select_index: np.ndarray | None = None
        self.points: np.ndarray | None = None
        self.val_points: np.ndarray | None = None
        self.train_index: np.ndarray | None = None
        self.val_index: np.ndarray | None = None
        self.duplicates: dict | None = None
        # the points are the source's divided by this (1 when normalized; io/validation.py)
        self.data_scale = 1.0
        self.train_points: torch.Tensor | None = None
        self._device_points: torch.Tensor | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.points is not None:
            return
        raw = self.source.load()
        points, self.data_scale = validate_points(
            raw, self.source.name, normalize=self.normalize, mode=self.mode, center=self.center, return_scale=True
        )
        if self.mode == "pairs":
            rows, pairs = duplicate_rows(
                points, Heartbeat(f"duplicate scan of {len(points)} rows", len(points), "rows")
            )
            self.duplicates = {"rows": rows, "pairs": pairs}
            if rows:
                message = (
                    f"{self.source.name}: {rows} duplicate row(s), {pairs} pair(s) at distance 0; "
                    "these pairs are left out of the loss and of every reported figure"
                )
                warnings.warn(message, DuplicatePointsWarning, stacklevel=2)
                log.warning("%s", message)
        self.train_index, self.val_index = split_indices(
            len(points), self.val_fraction, self.split_seed, min_train=2 if self.mode == "pairs" else 1
        )
        if self.select_fraction:
            fit, select = split_indices(
                len(self.train_index),
                self.select_fraction,
                self.split_seed + 1,
                min_train=2 if self.mode == "pairs" else 1,
                name="data.select_fraction",
            )
            self.select_index, self.train_index = self.train_index[select], self.train_index[fit]
            self.select_points = points[self.select_index]
        self.points = points[self.train_index]
        self.val_points = points[self.val_index] if len(self.val_index) else None
        if isinstance(self.points, SparseRows):  # kept sparse, on the CPU (core/losses.py multiplies it)
            self.train_points = self.points.astype(np.float32)
        else:
            self.train_points = torch.from_numpy(self.points.astype(np.float32))

    @property
    def fingerprint(self) -> str:
        """sha256 of the training points (summary.json's ``data_fingerprint``), computed once."""
        self._require_setup()
        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = fingerprint(self.points)
        return self._fingerprint

    def state_dict(self) -> dict:
        """Lightning keeps this in every checkpoint: which data the run trains on."""
        return {"data_fingerprint": self.fingerprint} if self.points is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        """A resumed run continues only on the data it was trained on: refused (JLInputError,
        naming the source and both fingerprints) when the training points differ."""
        saved = state_dict.get("data_fingerprint")
        if saved is not None and self.points is not None and saved != self.fingerprint:
            raise JLInputError(
                f"resume: the data changed since the checkpoint was saved: {self.name} now gives "
                f"{short_fingerprint(self.fingerprint)}, the run trained on "
                f"{short_fingerprint(saved)}; refusing to continue on other data (start a new run)"
            )

    @property
    def name(self) -> str:
        """The source's description (a file path, or what generated the points)."""
        return getattr(self.source, "name", type(self.source).__name__)

    @property
    def n(self) -> int:
        self._require_setup()
        return self.points.shape[0]

    @property
    def dim(self) -> int:
        self._require_setup()
        return self.points.shape[1]

    @property
    def width(self) -> float:
        """Values a step reads per point: d for dense rows, the mean non-zeros of sparse ones."""
        self._require_setup()
        if isinstance(self.points, SparseRows):
            return self.points.matrix.nnz / max(self.n, 1)
        return float(self.dim)

    def _require_setup(self) -> None:
        if self.points is None:
            raise RuntimeError("call JLDataModule.setup() before reading its points")

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        """Move the full batch to the device once and hand back that same tensor every
        step, so the module's prepared loss stays valid on a GPU too (see the contract)."""
        if isinstance(batch, SparseRows):
            return batch
        if batch is self.train_points:
            if self._device_points is None or self._device_points.device != device:
                self._device_points = batch.to(device)
            return self._device_points
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def train_dataloader(self) -> FullBatchLoader:
        self._require_setup()
        steps = 1
        if self.trainer is not None and self.trainer.max_steps and self.trainer.max_steps > 0:
            steps = self.trainer.max_steps
        return FullBatchLoader(self.train_points, steps)
