"""Callbacks: variance monitoring, the switch to the deterministic mean, exact evaluation,
reference lines."""

from jl_lightning.callbacks.deterministic_switch import DeterministicSwitch
from jl_lightning.callbacks.distortion_tracker import DistortionTracker
from jl_lightning.callbacks.reference_lines import ReferenceLines
from jl_lightning.callbacks.variance_monitor import VarianceMonitor

__all__ = ["DeterministicSwitch", "DistortionTracker", "ReferenceLines", "VarianceMonitor"]
