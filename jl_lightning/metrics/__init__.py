"""Exact distortion figures of any linear map: :func:`evaluate` and its :class:`DistortionReport`."""

from jl_lightning.metrics.distortion import DistortionReport, evaluate

__all__ = ["DistortionReport", "evaluate"]
