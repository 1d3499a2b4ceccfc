"""Training callbacks: ``from barenet.callbacks import EarlyStopping``.

Defined in :mod:`barenet.models.callbacks` (the loop's own), :mod:`barenet.checkpoint` (ModelCheckpoint),
:mod:`barenet.gradient_monitor` (GradientMonitor), :mod:`barenet.csv_logger` (CSVLogger) and
:mod:`barenet.tensorboard` (TensorBoard, which needs the ``tensorboard`` extra when it is used).
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
from .tensorboard import TensorBoard

__all__ = [
    "CSVLogger", "Callback", "EarlyStopping", "GradientMonitor", "GradientWarning", "LearningRateScheduler",
    "ModelCheckpoint", "ProgressBar", "ReduceLROnPlateau", "TensorBoard", "TerminateOnNaN",
]
