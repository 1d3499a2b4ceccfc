"""ONNX export: barenet models as ONNX graphs that onnxruntime (or any ONNX runtime) can serve.

Needs the optional ``onnx`` package (``pip install "barenet[onnx]"``), imported only when a function
here is called, so ``import barenet`` works without it.
"""

from .export import export_onnx, model_metadata, to_onnx
from .graph import DEFAULT_OPSET, MIN_OPSET, MissingOnnxError, OnnxExportError
from .registry import converts, supported_layers

__all__ = ["DEFAULT_OPSET", "MIN_OPSET", "MissingOnnxError", "OnnxExportError", "converts", "export_onnx",
           "model_metadata", "supported_layers", "to_onnx"]
