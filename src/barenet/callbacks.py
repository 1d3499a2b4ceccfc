"""Training callbacks: ``from barenet.callbacks import EarlyStopping`` (defined in :mod:`barenet.models.callbacks`)."""

from .models.callbacks import (
    Callback,
    EarlyStopping,
    LearningRateScheduler,
    ModelCheckpoint,
    ProgressBar,
    ReduceLROnPlateau,
    TerminateOnNaN,
)

__all__ = [
    "Callback", "EarlyStopping", "LearningRateScheduler", "ModelCheckpoint", "ProgressBar", "ReduceLROnPlateau",
    "TerminateOnNaN",
]
