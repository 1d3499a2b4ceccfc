"""``to_onnx`` / ``export_onnx``: a built :class:`~barenet.Sequential` as an ONNX model.

The graph has one input ``input : (batch, *model.input_shape)`` in the model's dtype (int64 token ids when
the first layer takes them: Embedding, TokenAndPositionEmbedding) and one output ``output : (batch,
*model.output_shape)``, what ``model.predict`` returns. The batch axis is the symbolic dimension ``batch``.
Notes about the model travel in the ONNX model's ``metadata_props``: see :func:`model_metadata`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .._output import write_file
from ..errors import NotFittedError
from ..models import masking
from . import layers as _layers  # noqa: F401  (registers the converters)
from . import recurrent as _recurrent  # noqa: F401
from .graph import DEFAULT_OPSET, MIN_OPSET, Graph, OnnxExportError, require_onnx
from .registry import convert, converter_for


def check_opset(opset: int | None) -> int:
    """``opset`` (default :data:`DEFAULT_OPSET`) after checking it is one the converters and onnx support."""
    onnx = require_onnx()
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        return min(DEFAULT_OPSET, newest)
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= newest:
        raise OnnxExportError(f"opset must be an integer from {MIN_OPSET} to {newest} (the newest this onnx "
                              f"package knows), got {opset!r}")
    return int(opset)


def network(model: Any, g: Graph, x: str, *, ids: bool = False) -> str:
    """Append every layer of ``model`` to ``g`` on the tensor ``x``; return the output tensor's name.

    ``x`` is the model's input as ``predict`` sees it; ``ids`` says it holds int64 token ids. A layer that
    takes ids (Embedding, TokenAndPositionEmbedding) and receives floats (later in the stack, or from a
    float input) gets them cast to int64, as barenet turns exact-integer floats into indices.
    """
    for layer in model.layers:
        converter_for(layer)  # refuse before building anything
    for k, layer in enumerate(model.layers):
        if layer.takes_indices and not (k == 0 and ids):
            x = g.op("Cast", [x], to=g.onnx.TensorProto.INT64)
        x = convert(layer, g, x)
    return x


def graph_network(model: Any, g: Graph, xs: list[str]) -> list[str]:
    """Append the calls of a graph :class:`~barenet.Model` to ``g`` on the input tensors ``xs``; return the
    output tensors' names. A merge layer's converter gets the list of its inputs' names; a nested model is
    written out in place, once per call."""
    from ..models.graph import Model

    for layer in model.layers:
        if not isinstance(layer, Model):
            converter_for(layer)  # refuse before building anything
    names = {t.key: x for t, x in zip(model.inputs, xs, strict=True)}
    integer = {t.key for t, spec in zip(model.inputs, model.input_specs, strict=True) if spec.takes_indices}
    for node in model.nodes:
        args = [names[t.key] for t in node.inputs]
        layer = node.layer
        if getattr(layer, "takes_indices", False) and layer.takes_own_input(node.options) \
                and node.inputs[0].key not in integer:
            args = [g.op("Cast", [args[0]], to=g.onnx.TensorProto.INT64)]
        if isinstance(layer, Model):
            y = graph_network(layer, g, args)[0]
        else:
            y = convert(layer, g, args[0] if node.single else args, **node.options)
        names[node.output.key] = y
    return [names[t.key] for t in model.outputs]


def model_metadata(model: Any) -> dict[str, str]:
    """The ``metadata_props`` of an exported model, all JSON or plain strings.

    ``barenet_version``; ``task`` and ``loss`` when the model is compiled; ``classes`` (a JSON list) when
    the class labels are known (from the CLI's preprocessing or ``model.metadata["classes"]``);
    ``preprocessing`` (JSON) for models trained by ``barenet train``; ``barenet_metadata``: all of
    ``model.metadata`` as JSON.
    """
    from .. import __version__, losses

    meta = {"barenet_version": __version__, "dtype": model.dtype.name}
    if model.loss is not None and getattr(model, "output_losses", [None]) is not None and len(
            getattr(model, "outputs", [None])) == 1:
        meta["task"] = model.task
        meta["loss"] = json.dumps(losses.serialize(model.loss))
    notes = model.metadata or {}
    prep = notes.get("preprocessing")
    classes = prep.get("classes") if isinstance(prep, dict) else notes.get("classes")
    try:
        if classes is not None:
            meta["classes"] = json.dumps(classes)
        if prep is not None:
            meta["preprocessing"] = json.dumps(prep)
        if notes:
            meta["barenet_metadata"] = json.dumps(notes)
    except (TypeError, ValueError) as exc:
        raise OnnxExportError(f"model.metadata must hold only JSON values (dicts, lists, strings, numbers) to "
                              f"travel in the ONNX file: {exc}") from None
    return meta


def finish(g: Graph, model: Any, inputs: list[Any], outputs: list[Any], output_names: list[str], name: str) -> Any:
    """Wrap ``g`` into a checked ``onnx.ModelProto`` with the model's metadata."""
    onnx = g.onnx
    g.simplify(output_names)
    graph = onnx.helper.make_graph(g.nodes, name, inputs, outputs, initializer=g.initializers,
                                   doc_string=f"barenet {model!r}")
    opsets = [onnx.helper.make_opsetid("", g.opset)] + [onnx.helper.make_opsetid(d, v) for d, v in g.domains.items()]
    proto = onnx.helper.make_model(graph, opset_imports=opsets, producer_name="barenet")
    from .. import __version__

    proto.producer_version = __version__
    proto.ir_version = min(proto.ir_version, 10)  # what onnxruntime >= 1.18 reads
    onnx.helper.set_model_props(proto, model_metadata(model))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise OnnxExportError(f"the graph written for {model!r} fails onnx's full check: {exc}") from None
    return proto


def to_onnx(model: Any, *, opset: int | None = None) -> Any:
    """The ONNX form of a built ``model`` as an in-memory ``onnx.ModelProto``.

    Parameters
    ----------
    model : Sequential
        Built (trained or not); float32 or float64, written in that dtype.
    opset : int, optional
        Default-domain opset, from 13 (:data:`MIN_OPSET`) to the newest the installed onnx knows; default 21.
        Each layer is written in the operator forms of that opset (LayerNormalization decomposed below 17,
        GELU below 20, ...).

    Raises
    ------
    OnnxExportError
        A layer has no ONNX form (the message names it), or the opset is out of range.
    MissingOnnxError
        The ``onnx`` package is not installed.
    """
    opset = check_opset(opset)
    if not getattr(model, "built", False):
        raise NotFittedError("the model is not built; build or fit it before exporting it to ONNX")
    using = masking.layers_using_masks(model)
    if using:
        raise OnnxExportError(f"{using[0].describe()} uses a padding mask (from a layer with mask_zero=True), which "
                              f"the ONNX form does not carry; export a model made with mask_zero=False")
    g = Graph(model.dtype, opset)
    onnx = g.onnx
    if hasattr(model, "nodes"):
        return _graph_to_onnx(model, g)
    ids = model.layers[0].takes_indices
    elem = onnx.TensorProto.INT64 if ids else g.elem_type
    x = g.reserve("input")
    y = network(model, g, x, ids=ids)
    out = g.reserve("output")
    g.op("Identity", [y], out_names=[out])
    inputs = [onnx.helper.make_tensor_value_info(x, elem, ["batch", *model.input_shape])]
    outputs = [onnx.helper.make_tensor_value_info(out, g.elem_type, ["batch", *model.output_shape])]
    return finish(g, model, inputs, outputs, [out], model.name or "barenet")


def _graph_to_onnx(model: Any, g: Graph) -> Any:
    """:func:`to_onnx` of a graph model: one ONNX input per model input (named as they are), one output per
    model output (``output`` for a single one, else the names of the layers making them)."""
    onnx = g.onnx
    xs = [g.reserve(name) for name in model.input_names]
    ys = graph_network(model, g, xs)
    out_names = ["output"] if len(ys) == 1 else model.output_names
    outs = [g.reserve(name) for name in out_names]
    for y, out in zip(ys, outs, strict=True):
        g.op("Identity", [y], out_names=[out])
    inputs = [onnx.helper.make_tensor_value_info(x, onnx.TensorProto.INT64 if spec.takes_indices else g.elem_type,
                                                 ["batch", *spec.input_shape])
              for x, spec in zip(xs, model.input_specs, strict=True)]
    outputs = [onnx.helper.make_tensor_value_info(out, g.elem_type, ["batch", *t.sample_shape])
               for out, t in zip(outs, model.outputs, strict=True)]
    return finish(g, model, inputs, outputs, outs, model.name or "barenet")


def export_onnx(model: Any, path: str | os.PathLike, *, opset: int | None = None) -> None:
    """Write :func:`to_onnx`'s model to ``path``, overwriting it; the folder must exist.

    The file is written whole or not at all, with the permissions a plain ``open`` gives (see
    :mod:`barenet._output`).

    Raises
    ------
    OnnxExportError, MissingOnnxError, NotFittedError
        As :func:`to_onnx`.
    OutputError
        ``path`` is a folder, its folder does not exist or cannot be written, or writing failed.
    """
    data = to_onnx(model, opset=opset).SerializeToString()
    write_file(path, lambda target: target.write_bytes(data), "ONNX file")
