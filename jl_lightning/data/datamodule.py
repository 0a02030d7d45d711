"""The LightningDataModule: validated unit-norm points, served full batch."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from lightning.pytorch import LightningDataModule

from jl_lightning.data.validation import validate_points


class FullBatchLoader:
    """Yields the whole (n, d) tensor of points ``length`` times.

    One epoch is the whole run (``trainer.max_steps`` steps), so Lightning's
    per-epoch work happens once, and every step sees every point. A plain sized
    iterable rather than a torch DataLoader: the DataLoader's per-batch profiler
    range and index sampling cost tens of microseconds a step for no benefit
    when the batch is always the same tensor.
    """

    def __init__(self, points: torch.Tensor, length: int):
        self.points = points
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        return itertools.repeat(self.points, self.length)


class JLDataModule(LightningDataModule):
    """Supplies the points to embed.

    Parameters
    ----------
    source:
        An object with ``load()`` and ``name`` (``GaussianPoints`` or ``FilePoints``).
    normalize:
        Scale every point to unit norm (the paper's setting). With ``False`` the
        distortion is still the scale-free ratio ‖Ax‖²/‖x‖².

    After :meth:`setup`, ``points`` is the validated float64 numpy array used for
    exact evaluation, and ``train_points`` its float32 tensor used for training.
    """

    def __init__(self, source, normalize: bool = True):
        super().__init__()
        self.source = source
        self.normalize = normalize
        self.points: np.ndarray | None = None
        self.train_points: torch.Tensor | None = None
        self._device_points: torch.Tensor | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.points is not None:
            return
        raw = self.source.load()
        self.points = validate_points(raw, self.source.name, normalize=self.normalize)
        self.train_points = torch.from_numpy(self.points.astype(np.float32))

    @property
    def n(self) -> int:
        self._require_setup()
        return self.points.shape[0]

    @property
    def dim(self) -> int:
        self._require_setup()
        return self.points.shape[1]

    def _require_setup(self) -> None:
        if self.points is None:
            raise RuntimeError("call JLDataModule.setup() before reading its points")

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):
        """Move the full batch to the device once and hand back that same tensor
        every step, so the module's cached span factor stays valid on a GPU too."""
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
