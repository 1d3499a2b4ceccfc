"""skl2onnx converters for :class:`~barenet.sklearn.NeuralNetClassifier` and ``NeuralNetRegressor``.

After :func:`register` (called on import of this module), ``skl2onnx.to_onnx`` converts pipelines that end
in (or contain) barenet's estimators, like it converts scikit-learn's ``MLPClassifier``: a classifier gives
``label`` and ``probabilities`` (a list of per-class maps with the default ``zipmap`` option, a plain
``(N, classes)`` tensor with ``options={"zipmap": False}``, one column per class with ``"columns"``; with
``"nocl": True`` the labels are class indices); a regressor gives ``variable : (N, n_outputs)``.

The network's nodes are those of :func:`barenet.onnx.to_onnx`, renamed into skl2onnx's scope. The input is
cast to the network's dtype first (as ``predict`` does), the outputs to the dtype skl2onnx declares for
them (float32 for float32 inputs, double for double ones, as ``predict_proba`` returns).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..sklearn import NeuralNetClassifier, NeuralNetRegressor
from .export import network
from .graph import MIN_OPSET, Graph, OnnxExportError


def _graph_for(estimator: Any, container: Any) -> Graph:
    opset = container.target_opset
    if opset < MIN_OPSET:
        raise OnnxExportError(f"{type(estimator).__name__} needs target_opset >= {MIN_OPSET}, got {opset}")
    return Graph(estimator.model_.dtype, opset)


def _input(g: Graph, operator: Any) -> str:
    """The operator's input, cast to the network's dtype when it differs."""
    name = g.reserve(operator.inputs[0].full_name)
    if operator.inputs[0].type.to_onnx_type().tensor_type.elem_type != g.elem_type:
        name = g.op("Cast", [name], to=g.elem_type)
    return name


def _cast_to(g: Graph, x: str, variable: Any) -> None:
    """``x`` as the operator output ``variable``, cast to its declared element type."""
    elem = variable.type.to_onnx_type().tensor_type.elem_type
    if elem != g.elem_type:
        g.op("Cast", [x], to=elem, out_names=[variable.full_name])
    else:
        g.op("Identity", [x], out_names=[variable.full_name])


def _emit(g: Graph, scope: Any, container: Any, operator: Any) -> None:
    """Copy ``g``'s nodes and initializers into skl2onnx's container, renaming every tensor but the
    operator's inputs and outputs into skl2onnx's scope."""
    onnx = g.onnx
    outputs = [v.full_name for v in operator.outputs]
    g.simplify(outputs)
    external = {*outputs, *(v.full_name for v in operator.inputs)}
    rename: dict[str, str] = {}

    def new(name: str) -> str:
        if name in external or name == "":
            return name
        if name not in rename:
            rename[name] = scope.get_unique_variable_name(name)
        return rename[name]

    for tensor in g.initializers:
        array = onnx.numpy_helper.to_array(tensor)
        if array.dtype.kind in "OUS":
            container.add_initializer(new(tensor.name), onnx.TensorProto.STRING, list(array.shape),
                                      [str(v) for v in array.ravel()])
        else:
            copy = onnx.numpy_helper.from_array(array, new(tensor.name))
            container.add_initializer(copy.name, copy.data_type, list(copy.dims), copy)
    for node in g.nodes:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: (v.decode() if isinstance(v, bytes) else [s.decode() if isinstance(s, bytes) else s for s in v]
                     if isinstance(v, list) else v) for k, v in attrs.items()}
        container.add_node(node.op_type, [new(n) for n in node.input], [new(n) for n in node.output],
                           op_domain=node.domain, op_version=g.domains.get(node.domain, g.opset),
                           name=scope.get_unique_operator_name(f"barenet_{node.op_type}"), **attrs)


def convert_classifier(scope: Any, operator: Any, container: Any) -> None:
    """skl2onnx converter: ``label`` and ``probabilities`` of a fitted :class:`NeuralNetClassifier`."""
    est = operator.raw_operator
    if getattr(est, "_multilabel", False):
        raise OnnxExportError("NeuralNetClassifier fitted on multi-label targets has no ONNX form here; "
                              "only single-label classifiers are exported")
    g = _graph_for(est, container)
    label_out = g.reserve(operator.outputs[0].full_name)
    g.reserve(operator.outputs[1].full_name)
    y = network(est.model_, g, _input(g, operator))
    if est.out_activation_ == "sigmoid":  # binary: one unit holds P(classes_[1]), predict thresholds it at 0.5
        proba = g.op("Concat", [g.op("Sub", [g.const(1.0, "one"), y]), y], axis=1)
        index = g.op("Cast", [g.op("Reshape", [g.op("Greater", [y, g.const(0.5, "half")]), g.ints([-1])])],
                     to=g.onnx.TensorProto.INT64)
    else:
        proba = y
        index = g.op("ArgMax", [y], axis=1, keepdims=0)
    classes = np.asarray(est.classes_)
    if container.get_options(est, dict(nocl=False))["nocl"]:  # skl2onnx's option: class indices as labels
        classes = np.arange(len(classes))
    if classes.dtype.kind in "biu":
        labels = g.const(classes.astype(np.int64), "classes", dtype=np.int64)
    elif classes.dtype.kind in "OUS":
        labels = g.const(np.array([str(c) for c in classes], dtype=object), "classes", dtype=object)
    else:
        raise OnnxExportError(f"class labels of dtype {classes.dtype} have no ONNX form; expected integers or "
                              "strings")
    g.op("Gather", [labels, index], axis=0, out_names=[label_out])
    _cast_to(g, proba, operator.outputs[1])
    _emit(g, scope, container, operator)


def convert_regressor(scope: Any, operator: Any, container: Any) -> None:
    """skl2onnx converter: ``variable : (N, n_outputs)`` of a fitted :class:`NeuralNetRegressor`."""
    est = operator.raw_operator
    g = _graph_for(est, container)
    g.reserve(operator.outputs[0].full_name)
    y = network(est.model_, g, _input(g, operator))
    _cast_to(g, y, operator.outputs[0])
    _emit(g, scope, container, operator)


def regressor_shape(operator: Any) -> None:
    """skl2onnx shape calculator: ``(N, n_outputs)`` in the input's float type (double stays double)."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    kind = DoubleTensorType if isinstance(operator.inputs[0].type, DoubleTensorType) else FloatTensorType
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = kind([n, operator.raw_operator.n_outputs_])


def register() -> None:
    """Make skl2onnx convert barenet's estimators (its documented ``update_registered_converter``)."""
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes

    update_registered_converter(NeuralNetClassifier, "BarenetNeuralNetClassifier",
                                calculate_linear_classifier_output_shapes, convert_classifier,
                                options={"zipmap": [True, False, "columns"], "nocl": [True, False]})
    update_registered_converter(NeuralNetRegressor, "BarenetNeuralNetRegressor", regressor_shape, convert_regressor)


register()
