"""Training callbacks: ``from barenet.callbacks import EarlyStopping`` (defined in ``barenet.models.callbacks``,
ModelCheckpoint in ``barenet.checkpoint``)."""

from .checkpoint import ModelCheckpoint
from .models.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateScheduler,
    ProgressBar,
    ReduceLROnPlateau,
    TerminateOnNaN,
)

__all__ = [
    "Callback", "EarlyStopping", "LearningRateScheduler", "ModelCheckpoint", "ProgressBar", "ReduceLROnPlateau",
    "TerminateOnNaN",
]
