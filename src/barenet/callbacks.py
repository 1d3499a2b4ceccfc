"""Training callbacks: ``from barenet.callbacks import EarlyStopping``.

Defined in :mod:`barenet.models.callbacks` (the loop's own), :mod:`barenet.checkpoint` (ModelCheckpoint) and
:mod:`barenet.gradient_monitor` (GradientMonitor).
"""

from .checkpoint import ModelCheckpoint
from .gradient_monitor import GradientMonitor, GradientWarning
from .models.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateScheduler,
    ProgressBar,
    ReduceLROnPlateau,
    TerminateOnNaN,
)

__all__ = [
    "Callback", "EarlyStopping", "GradientMonitor", "GradientWarning", "LearningRateScheduler", "ModelCheckpoint",
    "ProgressBar", "ReduceLROnPlateau", "TerminateOnNaN",
]
