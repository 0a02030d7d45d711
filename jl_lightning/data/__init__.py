"""Data: sources of points, file loading, validation and the DataModule.

``JLDataModule`` is imported lazily so that loading and validation work
without importing Lightning.
"""

from jl_lightning.data.sources import ArrayPoints, DigitsPoints, FilePoints, GaussianPoints
from jl_lightning.data.validation import validate_k, validate_points

__all__ = ["ArrayPoints", "DigitsPoints", "FilePoints", "GaussianPoints", "JLDataModule", "validate_k", "validate_points"]


def __getattr__(name):
    if name == "JLDataModule":
        from jl_lightning.data.datamodule import JLDataModule

        return JLDataModule
    raise AttributeError(name)
