"""ONNX interchange: barenet models as ONNX graphs that onnxruntime (or any ONNX runtime) can serve, and ONNX
graphs trained elsewhere as barenet models.

Needs the optional ``onnx`` package (``pip install "barenet[onnx]"``), imported only when a function
here is called, so ``import barenet`` works without it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .export import export_onnx, model_metadata, to_onnx
from .graph import DEFAULT_OPSET, MIN_OPSET, MissingOnnxError, OnnxExportError
from .registry import converts, supported_layers

if TYPE_CHECKING:
    from ..models import Sequential


def import_onnx(path: str | os.PathLike, **kwargs) -> Sequential:
    """Build a barenet model from an ONNX file; see :func:`barenet.onnx.importer.import_onnx`.

    Raises :class:`MissingOnnxError` saying how to install ``onnx`` when it is missing.
    """
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise MissingOnnxError('ONNX import needs the onnx package; install it with pip install "barenet[onnx]"') \
            from None
    from .importer import import_onnx as run

    return run(path, **kwargs)


__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "MissingOnnxError", "OnnxExportError", "converts", "export_onnx",
           "import_onnx", "model_metadata", "supported_layers", "to_onnx"]
