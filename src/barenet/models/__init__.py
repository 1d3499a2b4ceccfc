"""Models, their training loop, callbacks and history."""

from . import training, validation
from .graph import Arrays, Input, Model, SymbolicTensor
from .history import History
from .sequential import Gradients, Sequential

__all__ = ["Arrays", "Gradients", "History", "Input", "Model", "Sequential", "SymbolicTensor", "training",
           "validation"]
