"""Callbacks: variance monitoring, the switch to the deterministic mean, exact evaluation, early stopping,
the reference lines, the run summary, recall@K, its figures, TensorBoard's layout and HParams,
progress, and a clean stop on SIGTERM/SIGINT. Each uses only the written contract (``contract.py``)."""

from jl_lightning.lightning.callbacks.deterministic_switch import DeterministicSwitch
from jl_lightning.lightning.callbacks.distortion_tracker import DistortionTracker
from jl_lightning.lightning.callbacks.early_stopping import DeterministicEarlyStopping
from jl_lightning.lightning.callbacks.graceful_stop import GracefulStop, RunStopped
from jl_lightning.lightning.callbacks.progress import JLProgressBar, ProgressLog
from jl_lightning.lightning.callbacks.recall import RecallAtK
from jl_lightning.lightning.callbacks.reference_lines import ReferenceLines
from jl_lightning.lightning.callbacks.run_figures import RunFigures
from jl_lightning.lightning.callbacks.run_summary import RunSummary
from jl_lightning.lightning.callbacks.tensorboard_report import TensorBoardReport
from jl_lightning.lightning.callbacks.variance_monitor import VarianceMonitor

__all__ = [
    "DeterministicEarlyStopping",
    "DeterministicSwitch",
    "DistortionTracker",
    "GracefulStop",
    "JLProgressBar",
    "ProgressLog",
    "RecallAtK",
    "ReferenceLines",
    "RunFigures",
    "RunStopped",
    "RunSummary",
    "TensorBoardReport",
    "VarianceMonitor",
]
