"""ONNX interchange. Needs the optional ``onnx`` package (``pip install "barenet[onnx]"``); barenet itself
imports without it, and these functions say how to install it when it is missing."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..models import Sequential


def require_onnx() -> None:
    """Raise a :class:`~barenet.errors.ConfigError` saying how to install ``onnx`` when it is missing."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ConfigError('ONNX support needs the onnx package: pip install "barenet[onnx]"') from None


def import_onnx(path: str | os.PathLike, **kwargs) -> Sequential:
    """Build a barenet model from an ONNX file; see :func:`barenet.onnx.importer.import_onnx`."""
    require_onnx()
    from .importer import import_onnx as run

    return run(path, **kwargs)


__all__ = ["import_onnx", "require_onnx"]
