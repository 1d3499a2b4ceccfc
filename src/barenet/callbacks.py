"""Training callbacks: ``from barenet.callbacks import EarlyStopping``.

Defined in :mod:`barenet.models.callbacks` (the loop's own), :mod:`barenet.checkpoint` (ModelCheckpoint),
:mod:`barenet.gradient_monitor` (GradientMonitor) and :mod:`barenet.csv_logger` (CSVLogger).
"""

from .checkpoint import ModelCheckpoint
from .csv_logger import CSVLogger
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
    "CSVLogger", "Callback", "EarlyStopping", "GradientMonitor", "GradientWarning", "LearningRateScheduler",
    "ModelCheckpoint", "ProgressBar", "ReduceLROnPlateau", "TerminateOnNaN",
]
