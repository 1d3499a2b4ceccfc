"""Exceptions raised by barenet.

Every error a user can trigger is a subclass of :class:`BarenetError`, and also of the
built-in exception a Python programmer would expect (``ValueError``, ``TypeError``), so
``except ValueError`` keeps working. Messages say what was wrong and what was expected.
"""

from __future__ import annotations


class BarenetError(Exception):
    """Base class of every error barenet raises on purpose."""


class ShapeError(BarenetError, ValueError):
    """An array has the wrong number of dimensions or the wrong size along one of them."""


class DataError(BarenetError, ValueError):
    """Input data is unusable: empty, non-finite, non-numeric or labels that do not fit the loss."""


class ConfigError(BarenetError, ValueError):
    """An argument or a configuration value is unknown or out of range."""


class NotFittedError(BarenetError, ValueError):
    """A model is used before it was built or trained."""


class ModelFileError(BarenetError, ValueError):
    """A saved model file is missing, corrupt, truncated, unsafe or of an unknown version."""


class OutputError(BarenetError, OSError):
    """An output file or folder cannot be written: a bad path, a full disk, no permission."""


class StreamError(DataError):
    """A stream of batches failed part way: a batch of the wrong shape or dtype, a bad value, a file that cannot
    be read, a generator that raised. The message names the source, the file and the batch or rows; ``fit``
    leaves the model with the weights of its last completed epoch, as after Ctrl-C."""


__all__ = ["BarenetError", "ConfigError", "DataError", "ModelFileError", "NotFittedError", "OutputError", "ShapeError",
           "StreamError"]
