"""Models, their training loop, callbacks and history."""

from . import training, validation
from .history import History
from .sequential import Gradients, Sequential

__all__ = ["Gradients", "History", "Sequential", "training", "validation"]
