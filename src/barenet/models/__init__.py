"""Models, their training loop, callbacks and history."""

from .history import History
from .sequential import Sequential

__all__ = ["History", "Sequential"]
