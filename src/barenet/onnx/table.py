"""A model trained by ``barenet train`` as an ONNX graph over the raw table's columns.

The preprocessing stored in ``model.metadata["preprocessing"]`` (see :mod:`barenet.preprocessing`) moves
into the graph, so a server feeds raw rows and reads what ``barenet predict`` prints:

* one input per feature column, shape ``(batch, 1)``: numeric columns as ``double``, scaled in double
  precision exactly as :meth:`TablePreprocessor.transform` does and then cast to the model's dtype; text
  columns as ``string``, one-hot encoded by ``ai.onnx.ml.OneHotEncoder`` (an unknown or empty category
  encodes as all zeros, as in barenet);
* classification: ``label : (batch,)`` (int64 when every class is an integer, else string) and
  ``probabilities : (batch, classes)`` in the model's dtype, columns in the order of the ``classes``
  metadata entry;
* regression: ``prediction : (batch,)`` in the model's dtype and the target's units (the target
  standardization undone in that dtype, as :meth:`TablePreprocessor.decode_target` does).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ConfigError, NotFittedError
from ..preprocessing import TablePreprocessor
from .export import check_opset, finish, network
from .graph import Graph, OnnxExportError


def _encode_columns(prep: TablePreprocessor, g: Graph) -> tuple[list[Any], str]:
    """Graph inputs for the feature columns and the name of the encoded ``(batch, features)`` matrix."""
    helper, tp = g.onnx.helper, g.onnx.TensorProto
    inputs, blocks = [], []
    names = [g.reserve(col["name"]) for col in prep.columns]  # before any internal name can take one
    for col, name in zip(prep.columns, names, strict=True):
        if col["kind"] == "numeric":
            inputs.append(helper.make_tensor_value_info(name, tp.DOUBLE, ["batch", 1]))
            centred = g.op("Sub", [name, g.const(col["center"], "center", dtype=np.float64)])
            scaled = g.op("Div", [centred, g.const(col["scale"], "scale", dtype=np.float64)])
            blocks.append(g.op("Cast", [scaled], to=g.elem_type))
        else:
            inputs.append(helper.make_tensor_value_info(name, tp.STRING, ["batch", 1]))
            onehot = g.op("OneHotEncoder", [name], domain="ai.onnx.ml", cats_strings=list(col["categories"]),
                          zeros=1)  # (batch, 1, categories) float32
            flat = g.op("Reshape", [onehot, g.ints([-1, len(col["categories"])])])
            blocks.append(g.op("Cast", [flat], to=g.elem_type))
    return inputs, blocks[0] if len(blocks) == 1 else g.op("Concat", blocks, axis=1)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, bool, int)) or _finite(value)


def checked_preprocessing(data: Any, model: Any) -> TablePreprocessor:
    """The preprocessing stored in a model file, after checking every part the graph is built from (the file
    is untrusted): column names and kinds, finite scaling statistics, text categories, class labels, and
    that the widths agree with the network's input and output. Anything else is :class:`OnnxExportError`."""
    def bad(what: str) -> OnnxExportError:
        return OnnxExportError(f"the model's preprocessing metadata is unusable: {what}")

    try:
        prep = TablePreprocessor.from_json(data)
    except (ConfigError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise bad(str(exc)) from None
    names = []
    for col in prep.columns:
        if not isinstance(col.get("name"), str) or not col["name"]:
            raise bad(f"column name {col.get('name')!r} is not a non-empty string")
        names.append(col["name"])
        if col.get("kind") == "numeric":
            if not (_finite(col.get("center")) and _finite(col.get("scale")) and col["scale"] != 0):
                raise bad(f"column {col['name']!r} needs finite center and non-zero scale")
        elif col.get("kind") == "categorical":
            cats = col.get("categories")
            if not isinstance(cats, list) or not cats or not all(isinstance(c, str) for c in cats) \
                    or len(set(cats)) != len(cats):
                raise bad(f"column {col['name']!r} needs a list of distinct category strings")
        else:
            raise bad(f"column {col['name']!r} has kind {col.get('kind')!r}; expected 'numeric' or 'categorical'")
    if not names or len(set(names)) != len(names):
        raise bad(f"feature columns {names} must be distinct and at least one")
    if prep.classes is not None and (len(prep.classes) < 2 or not all(_scalar(c) for c in prep.classes)
                                     or len({str(c) for c in prep.classes}) != len(prep.classes)):
        raise bad(f"classes {prep.classes!r} must be at least two distinct numbers or strings")
    if not (_finite(prep.target_center) and _finite(prep.target_scale)):
        raise bad("the target's center and scale must be finite")
    if tuple(model.input_shape) != (len(prep.feature_names),):
        raise bad(f"it encodes {len(prep.feature_names)} features, the network takes samples of shape "
                  f"{tuple(model.input_shape)}")
    if tuple(model.output_shape) != (prep.n_outputs,):
        raise bad(f"it expects {prep.n_outputs} network outputs, the network gives samples of shape "
                  f"{tuple(model.output_shape)}")
    return prep


def _integer_classes(classes: list[Any]) -> bool:
    return all(isinstance(c, int) and not isinstance(c, bool) for c in classes)


def table_to_onnx(model: Any, *, opset: int | None = None) -> Any:
    """The ONNX form of a model trained by ``barenet train``, from raw columns to labels or predictions.

    Raises
    ------
    OnnxExportError
        The model holds no preprocessing metadata, a layer has no ONNX form, or a feature column is named
        like an output (``label``, ``probabilities``, ``prediction``).
    """
    opset = check_opset(opset)
    data = (model.metadata or {}).get("preprocessing")
    if data is None:
        raise OnnxExportError("the model holds no table preprocessing in its metadata; only models written by "
                              "'barenet train' can be exported with their columns as inputs")
    if not getattr(model, "built", False):
        raise NotFittedError("the model is not built; build or fit it before exporting it to ONNX")
    prep = checked_preprocessing(data, model)
    g = Graph(model.dtype, opset)
    helper, tp = g.onnx.helper, g.onnx.TensorProto
    outs = ["label", "probabilities"] if prep.classes is not None else ["prediction"]
    clash = [c["name"] for c in prep.columns if c["name"] in outs]
    if clash:
        raise OnnxExportError(f"feature column {clash[0]!r} has the name of a graph output {outs}; rename it")
    for name in outs:
        g.reserve(name)
    inputs, x = _encode_columns(prep, g)
    y = network(model, g, x)
    if prep.classes is not None:
        g.op("Identity", [y], out_names=["probabilities"])
        index = g.op("ArgMax", [y], axis=1, keepdims=0)  # first maximum on ties, as numpy's argmax
        if _integer_classes(prep.classes):
            labels, label_type = g.const(np.array(prep.classes, dtype=np.int64), "classes", dtype=np.int64), tp.INT64
        else:
            labels, label_type = g.const(np.array([str(c) for c in prep.classes], dtype=object), "classes",
                                         dtype=object), tp.STRING
        g.op("Gather", [labels, index], axis=0, out_names=["label"])
        outputs = [helper.make_tensor_value_info("label", label_type, ["batch"]),
                   helper.make_tensor_value_info("probabilities", g.elem_type, ["batch", len(prep.classes)])]
    else:
        flat = g.op("Reshape", [y, g.ints([-1])])
        scaled = g.op("Mul", [flat, g.const(prep.target_scale, "target_scale")])
        g.op("Add", [scaled, g.const(prep.target_center, "target_center")], out_names=["prediction"])
        outputs = [helper.make_tensor_value_info("prediction", g.elem_type, ["batch"])]
    return finish(g, model, inputs, outputs, outs, model.name or "barenet")
