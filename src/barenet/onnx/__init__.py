"""ONNX interchange: barenet models as ONNX graphs that onnxruntime (or any ONNX runtime) can serve, and ONNX
graphs trained elsewhere as barenet models.

Needs the optional ``onnx`` package (``pip install "barenet[onnx]"``), imported only when a function
here is called, so ``import barenet`` works without it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ._checks import MAX_FILE_BYTES
from .export import export_onnx, model_metadata, to_onnx
from .graph import DEFAULT_OPSET, MIN_OPSET, MissingOnnxError, OnnxExportError
from .registry import converts, supported_layers

if TYPE_CHECKING:
    from ..models import Sequential


def import_onnx(path: str | os.PathLike, *, max_bytes: int = MAX_FILE_BYTES, dtype: Any = None) -> Sequential:
    """Build a barenet model from the ONNX file ``path``: a PyTorch or Keras network trained elsewhere, to
    predict, fine-tune and save with NumPy alone.

    Which operators and patterns become which layers is listed in the user guide's ONNX page and in
    ``barenet/onnx/importer.py``; anything else is refused with a :class:`~barenet.errors.ModelFileError` naming
    the operator and the node.

    Parameters
    ----------
    path : str or path-like
        The ``.onnx`` file. It is read as untrusted data: it is size-checked, parsed, and validated before
        anything is allocated. Tensors it stores outside itself are read only from files in its own folder.
    max_bytes : int
        Largest number of bytes read: the file plus the external data it names (1 GiB by default).
    dtype : {"float32", "float64"}, optional
        The model's dtype; by default that of the graph's float input (float32 when the inputs are integers).
        ``"float64"`` imports a float32 graph for fine-tuning in double precision (its weights are widened).

    Returns
    -------
    Sequential or Model
        A :class:`~barenet.Sequential` for a chain, a functional :class:`~barenet.Model` (a subclass) for any
        other graph, with one input per graph input and one output per graph output. Built, not compiled;
        ``model.predict`` gives the ONNX graph's output(s). Compile it to fine-tune.

    Raises
    ------
    MissingOnnxError
        The ``onnx`` package is not installed (the message says how to install it).
    ModelFileError
        The file is damaged, too large, or holds an operator or attribute barenet does not import.
    """
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise MissingOnnxError('ONNX import needs the onnx package; install it with pip install "barenet[onnx]"') \
            from None
    from .importer import import_onnx as run

    return run(path, max_bytes=max_bytes, dtype=dtype)


__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "MissingOnnxError", "OnnxExportError", "converts", "export_onnx",
           "import_onnx", "model_metadata", "supported_layers", "to_onnx"]
