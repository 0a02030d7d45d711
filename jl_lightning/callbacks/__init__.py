"""Callbacks: variance monitoring, the switch to the deterministic mean, exact evaluation."""

from jl_lightning.callbacks.deterministic_switch import DeterministicSwitch
from jl_lightning.callbacks.distortion_tracker import DistortionTracker
from jl_lightning.callbacks.variance_monitor import VarianceMonitor

__all__ = ["DeterministicSwitch", "DistortionTracker", "VarianceMonitor"]
