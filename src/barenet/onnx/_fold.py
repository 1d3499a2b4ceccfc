"""A small constant folder for the shape plumbing exporters leave in ONNX graphs.

Exporters compute things like "a zero state of shape (1, batch, hidden)" or "reshape to (time, batch, -1)"
with little subgraphs of ``Shape``, ``Gather``, ``Concat``, ``Slice``, ``Unsqueeze`` ... This module
evaluates such subgraphs with NumPy, over a fixed list of pure operators and nothing else (it is not an
interpreter: no control flow, no functions, no operator it does not list).

The batch size is unknown when a model is imported, so it is carried symbolically: a shape read from
the data path is an ``object`` array whose batch entry is :data:`BATCH`. Indexing, concatenating and
reshaping such arrays works as for numbers; arithmetic on :data:`BATCH` is refused. A tensor filled
with one value whose shape involves the batch (``ConstantOfShape``, ``Expand``) is a :class:`Filled`,
never allocated.

Every output's element count is checked against a budget before it is allocated; NumPy's own complaints
(bad axes, out-of-range indices) become :class:`~barenet.errors.ModelFileError` naming the node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ModelFileError
from ._checks import TENSOR_TYPES, bad, node_label, tensor_array


class _Batch:
    """The symbolic batch size in folded shapes."""

    def __repr__(self) -> str:
        return "batch"

    def __reduce__(self) -> str:
        return "BATCH"


BATCH = _Batch()


@dataclass(frozen=True)
class Filled:
    """A tensor of one ``value`` everywhere, whose ``shape`` contains :data:`BATCH`."""

    value: np.ndarray  # 0-d
    shape: tuple[Any, ...]


FOLDABLE = frozenset({
    "Constant", "Identity", "Cast", "Shape", "Gather", "Concat", "Slice", "Squeeze", "Unsqueeze", "Reshape",
    "Transpose", "Add", "Sub", "Mul", "Div", "ConstantOfShape", "Expand",
})
#: Those of the position ids, attention masks and scales Transformer exporters compute from constants.
FOLDABLE = FOLDABLE | {"Equal", "Where", "Mod", "Sqrt", "GatherElements", "Range", "Not", "And", "ReduceMax",
                       "Trilu"}


#: ONNX attribute types (AttributeProto.type) of every attribute the importer reads, by name; the names mean the
#: same type in every operator barenet imports. 1 float, 2 int, 3 string, 4 tensor, 6 floats, 7 ints, 8 strings.
ATTRIBUTE_TYPES = {
    **dict.fromkeys(("alpha", "beta", "epsilon", "momentum", "ratio", "value_float", "clip"), 1),
    **dict.fromkeys(("axis", "start", "end", "allowzero", "transA", "transB", "group", "ceil_mode", "storage_order",
                     "count_include_pad", "keepdims", "training_mode", "layout", "input_forget", "hidden_size",
                     "linear_before_reset", "to", "value_int"), 2),
    **dict.fromkeys(("approximate", "auto_pad", "direction"), 3),
    "mode": 3,
    "value": 4,
    **dict.fromkeys(("value_floats", "activation_alpha", "activation_beta"), 6),
    **dict.fromkeys(("perm", "pads", "strides", "dilations", "kernel_shape", "axes", "starts", "ends",
                     "value_ints"), 7),
    "activations": 8,
}

#: Those of Resize, Pad and LayerNormalization.
ATTRIBUTE_TYPES.update({
    **dict.fromkeys(("mode", "coordinate_transformation_mode", "nearest_mode", "keep_aspect_ratio_policy"), 3),
    **dict.fromkeys(("antialias", "exclude_outside", "stash_type"), 2),
    **dict.fromkeys(("cubic_coeff_a", "extrapolation_value"), 1),
})

_RECURRENT = ("activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size", "layout")
_WINDOW = ("auto_pad", "dilations", "kernel_shape", "pads", "strides")

#: The attributes each operator the importer takes may carry: those it reads (refusing the values it cannot
#: express), and those of :data:`IGNORED_ATTRIBUTES`. Any other attribute is refused, whether a newer opset
#: added it, an older one had it, or it is misspelt: ignoring it could change what the node computes.
KNOWN_ATTRIBUTES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("Add", "Sub", "Mul", "Div", "MatMul", "Relu", "Sigmoid", "Tanh", "Identity",
                     "GlobalAveragePool", "Expand", "Max", "Sum", "Mean"), ()),
    **dict.fromkeys(("LeakyRelu", "Elu"), ("alpha",)),
    **dict.fromkeys(("Softmax", "Flatten", "Gather", "Concat"), ("axis",)),
    **dict.fromkeys(("Squeeze", "Unsqueeze"), ("axes",)),
    "Gelu": ("approximate",),
    **dict.fromkeys(("Abs", "Clip", "Erf", "Exp", "GlobalMaxPool", "Greater", "HardSwish", "Less", "Log", "Max",
                     "Min", "Mish", "Neg", "Pow", "Reciprocal", "Softplus", "Sqrt", "Where"), ()),
    "HardSigmoid": ("alpha", "beta"),
    "Swish": ("alpha",),
    "ReduceMax": ("axes", "keepdims", "noop_with_empty_axes"),
    "LayerNormalization": ("axis", "epsilon", "stash_type"),
    "Resize": ("mode", "coordinate_transformation_mode", "nearest_mode", "antialias", "axes", "cubic_coeff_a",
               "exclude_outside", "extrapolation_value", "keep_aspect_ratio_policy"),
    "Pad": ("mode",),
    "Gemm": ("alpha", "beta", "transA", "transB"),
    "Conv": (*_WINDOW, "group"),
    "MaxPool": (*_WINDOW, "ceil_mode", "storage_order"),
    "AveragePool": (*_WINDOW, "ceil_mode", "count_include_pad"),
    "ReduceMean": ("axes", "keepdims", "noop_with_empty_axes"),
    "BatchNormalization": ("epsilon", "momentum", "training_mode"),
    "RNN": _RECURRENT,
    "LSTM": (*_RECURRENT, "input_forget"),
    "GRU": (*_RECURRENT, "linear_before_reset"),
    "Dropout": ("ratio", "seed"),
    "Reshape": ("allowzero",),
    "Transpose": ("perm",),
    "Slice": ("starts", "ends", "axes"),
    "Constant": ("value", "value_float", "value_floats", "value_int", "value_ints"),
    "ConstantOfShape": ("value",),
    "Cast": ("to", "saturate", "round_mode"),
    "Shape": ("start", "end"),
    **dict.fromkeys(("Equal", "Not", "And", "Range", "IsNaN"), ()),
    "Mod": ("fmod",),
    "Trilu": ("upper",),
    "GatherElements": ("axis",),
    "Split": ("axis", "num_outputs", "split"),
}
ATTRIBUTE_TYPES.update({"fmod": 2, "num_outputs": 2, "split": 7, "upper": 2})

#: Known attributes the importer does not read, because no value of theirs changes what it imports.
IGNORED_ATTRIBUTES: dict[str, dict[str, str]] = {
    "Cast": {"saturate": "only casts to float8 types saturate, and barenet reads none",
             "round_mode": "only casts to float8e8m0 round, and barenet reads no float8 type"},
    "Dropout": {"seed": "an inference-mode Dropout draws nothing"},
    "ReduceMean": {"noop_with_empty_axes": "only acts without axes, which the importer refuses"},
    "ReduceMax": {"noop_with_empty_axes": "only acts without axes, which the importer refuses"},
    "LayerNormalization": {"stash_type": "only sets the precision of the statistics a training graph keeps"},
    "Resize": {"cubic_coeff_a": "only the cubic mode reads it, which the importer refuses",
               "exclude_outside": "only the cubic mode reads it, which the importer refuses",
               "extrapolation_value": "only tf_crop_and_resize reads it, which the importer refuses"},
}

#: ``(operator, attribute) -> opset`` from which the attribute is an input instead (it is refused from then on).
BECAME_INPUTS = {("Squeeze", "axes"): 13, ("Unsqueeze", "axes"): 13, ("ReduceMean", "axes"): 18,
                 ("ReduceMax", "axes"): 18,
                 ("Slice", "starts"): 10, ("Slice", "ends"): 10, ("Slice", "axes"): 10, ("Dropout", "ratio"): 12,
                 ("Split", "split"): 13}


def known_attributes(op: str, opset: int) -> list[str]:
    """The attributes a node of operator ``op`` may carry in a model of default-domain ``opset``."""
    return [name for name in KNOWN_ATTRIBUTES.get(op, ()) if opset < BECAME_INPUTS.get((op, name), opset + 1)]


def attributes(node: Any, opset: int) -> dict[str, Any]:
    """A node's attributes as Python values (tensors as arrays), each of the type its name calls for; an
    attribute not in :func:`known_attributes` is refused, and those of :data:`IGNORED_ATTRIBUTES` are left out."""
    out: dict[str, Any] = {}
    known = known_attributes(node.op_type, opset)
    ignored = IGNORED_ATTRIBUTES.get(node.op_type, {})
    for a in node.attribute:
        if a.name not in known:
            raise bad(f"{node_label(node)} has attribute {a.name!r}, which barenet does not know for a "
                      f"{node.op_type} at opset {opset} (it knows {', '.join(sorted(known)) or 'none'}); "
                      "ignoring it could change what the node computes")
        if a.name in ignored:
            continue
        expected = ATTRIBUTE_TYPES[a.name]
        if a.type != expected:
            raise bad(f"attribute {a.name!r} of {node_label(node)} has ONNX attribute type {a.type}; "
                      f"expected {expected}")
        if a.type == 1:
            out[a.name] = float(a.f)
        elif a.type == 2:
            out[a.name] = int(a.i)
        elif a.type == 3:
            out[a.name] = a.s.decode("utf-8", errors="replace")
        elif a.type == 4:
            out[a.name] = tensor_array(a.t)
        elif a.type == 6:
            out[a.name] = [float(v) for v in a.floats]
        elif a.type == 7:
            out[a.name] = [int(v) for v in a.ints]
        else:
            out[a.name] = [s.decode("utf-8", errors="replace") for s in a.strings]
    return out


def has_batch(a: Any) -> bool:
    return isinstance(a, Filled) or (isinstance(a, np.ndarray) and a.dtype == object
                                     and any(v is BATCH for v in a.flat))


def int_list(a: Any, what: str, node: Any) -> list[int]:
    """A constant integer vector (or scalar) as a list of ints."""
    if not isinstance(a, np.ndarray) or has_batch(a) or a.ndim > 1 or a.dtype.kind not in "iu":
        raise bad(f"{what} of {node_label(node)} must be a constant integer vector")
    return [int(v) for v in np.atleast_1d(a)]


class Folder:
    """Evaluates foldable nodes; ``budget`` caps the elements of any one result, four times it their total
    (so that many nodes, each within the budget, cannot add up to a huge allocation)."""

    def __init__(self, budget: int, opset: int) -> None:
        self.budget = budget
        self.opset = opset
        self.total = 0

    def _size_ok(self, shape: tuple[int, ...], node: Any) -> None:
        n = 1
        for d in shape:
            n *= int(d)
            if n > self.budget:
                raise bad(f"{node_label(node)} would make a tensor of shape {tuple(shape)}, more than the "
                          f"{self.budget} elements allowed for a file of this size")

    def fold(self, node: Any, inputs: list[Any], attrs: dict[str, Any]) -> list[Any]:
        """Outputs of ``node`` given its constant (or :class:`Filled`) inputs (``None`` for omitted ones)."""
        op: Callable = getattr(self, "_" + node.op_type)
        try:
            out = op(node, inputs, attrs)
        except ModelFileError:
            raise
        except (ValueError, IndexError, TypeError, OverflowError, ZeroDivisionError) as exc:
            raise bad(f"cannot evaluate {node_label(node)}: {exc}") from None
        out = [_as_array(o) for o in (out if isinstance(out, list) else [out])]
        self.total += sum(o.size for o in out if isinstance(o, np.ndarray))
        if self.total > 4 * self.budget:
            raise bad(f"{node_label(node)} brings the folded constants to {self.total} elements, more than the "
                      f"{4 * self.budget} allowed for a file of this size")
        return out

    # ----------------------------------------------------------------- operators
    def _Constant(self, node, inputs, attrs):
        for key in ("value_float", "value_int"):
            if key in attrs:
                return np.array(attrs[key], dtype=np.float32 if key == "value_float" else np.int64)
        for key in ("value_floats", "value_ints"):
            if key in attrs:
                return np.array(attrs[key], dtype=np.float32 if key == "value_floats" else np.int64)
        if "value" in attrs:
            return attrs["value"]
        raise bad(f"{node_label(node)} has no value barenet can read (a value, value_float(s) or value_int(s))")

    def _Identity(self, node, inputs, attrs):
        return inputs[0]

    def _Cast(self, node, inputs, attrs):
        to = attrs.get("to")
        if to not in TENSOR_TYPES:
            raise bad(f"{node_label(node)} casts to ONNX type {to!r}, which barenet does not read")
        dtype = TENSOR_TYPES[to][0].newbyteorder("=")
        x = inputs[0]
        if isinstance(x, Filled):
            return Filled(x.value.astype(dtype), x.shape)
        if x.dtype == object:  # a shape holding BATCH: integer casts keep it symbolic
            if dtype.kind not in "iu":
                raise bad(f"{node_label(node)} casts the batch size to {dtype}")
            return x
        return x.astype(dtype)

    def _Shape(self, node, inputs, attrs):
        x = inputs[0]
        shape = list(x.shape)
        start, end = attrs.get("start", 0), attrs.get("end", len(shape))
        dims = shape[slice(start, end)]
        if any(d is BATCH for d in dims):
            return np.array(dims, dtype=object)
        return np.array(dims, dtype=np.int64)

    def _Gather(self, node, inputs, attrs):
        data, idx = self._const(inputs[0], node), self._const(inputs[1], node)
        if idx.dtype.kind not in "iu":
            raise bad(f"{node_label(node)} gathers with non-integer indices")
        axis = attrs.get("axis", 0)
        if not -data.ndim <= axis < data.ndim:
            raise bad(f"{node_label(node)} gathers along axis {axis} of a {data.ndim}-d tensor")
        n = data.shape[axis]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise bad(f"{node_label(node)} gathers index {int(idx.max())} or {int(idx.min())} from an axis "
                      f"of length {n}")
        self._size_ok((*data.shape[:axis % data.ndim], *idx.shape, *data.shape[axis % data.ndim + 1:]), node)
        return np.take(data, idx, axis=axis)

    def _Concat(self, node, inputs, attrs):
        parts = [self._const(x, node) for x in inputs if x is not None]
        self._size_ok((sum(p.size for p in parts),), node)
        out = np.concatenate(parts, axis=attrs.get("axis", 0))
        return out if out.dtype != object or has_batch(out) else out.astype(np.int64)

    def _Slice(self, node, inputs, attrs):
        x = inputs[0]
        shape = list(x.shape)
        index = slice_index(shape, *slice_arguments(node, inputs, attrs, self.opset), node)
        if isinstance(x, Filled):
            new = []
            for d, s in zip(shape, index, strict=True):
                if d is BATCH:
                    if s != slice(None):
                        raise bad(f"{node_label(node)} slices the batch axis")
                    new.append(BATCH)
                else:
                    new.append(len(range(*s.indices(d))))
            return Filled(x.value, tuple(new))
        return x[tuple(index)]

    def _axes(self, node, inputs, attrs) -> list[int] | None:
        if self.opset >= 13 and node.op_type in ("Squeeze", "Unsqueeze"):
            return int_list(inputs[1], "axes", node) if len(inputs) > 1 and inputs[1] is not None else None
        return attrs.get("axes")

    def _Squeeze(self, node, inputs, attrs):
        x = self._const(inputs[0], node)
        axes = self._axes(node, inputs, attrs)
        return np.squeeze(x, axis=None if axes is None else tuple(axes))

    def _Unsqueeze(self, node, inputs, attrs):
        x = self._const(inputs[0], node)
        axes = self._axes(node, inputs, attrs)
        if axes is None:
            raise bad(f"{node_label(node)} has no axes")
        return np.expand_dims(x, tuple(a % (x.ndim + len(axes)) if a >= -(x.ndim + len(axes)) else a
                                       for a in axes))

    def _Reshape(self, node, inputs, attrs):
        x = self._const(inputs[0], node)
        target = self._const(inputs[1], node)
        if has_batch(target):
            raise bad(f"{node_label(node)} reshapes a constant to a shape that depends on the batch size")
        shape = resolve_shape(list(x.shape), int_list(target, "shape", node), attrs.get("allowzero", 0), node)
        return x.reshape(shape)

    def _Transpose(self, node, inputs, attrs):
        x = self._const(inputs[0], node)
        perm = attrs.get("perm", list(range(x.ndim))[::-1])
        if sorted(perm) != list(range(x.ndim)):
            raise bad(f"{node_label(node)} has perm {perm}, not a permutation of {x.ndim} axes")
        return np.transpose(x, perm)

    def _binary(self, node, inputs, ufunc):
        a, b = self._const(inputs[0], node), self._const(inputs[1], node)
        if has_batch(a) or has_batch(b):
            raise bad(f"{node_label(node)} does arithmetic on the batch size, which is unknown on import")
        self._size_ok(np.broadcast_shapes(a.shape, b.shape), node)
        if a.dtype != b.dtype:
            raise bad(f"{node_label(node)} mixes dtypes {a.dtype} and {b.dtype}")
        return ufunc(a, b)

    def _Add(self, node, inputs, attrs):
        return self._binary(node, inputs, np.add)

    def _Sub(self, node, inputs, attrs):
        return self._binary(node, inputs, np.subtract)

    def _Mul(self, node, inputs, attrs):
        return self._binary(node, inputs, np.multiply)

    def _Div(self, node, inputs, attrs):
        def divide(a, b):
            if a.dtype.kind in "iub":
                if np.any(b == 0):
                    raise bad(f"{node_label(node)} divides an integer by zero")
                q = np.abs(a) // np.abs(b)  # ONNX integer division truncates toward zero
                return (q * np.sign(a) * np.sign(b)).astype(a.dtype)
            return np.divide(a, b)
        return self._binary(node, inputs, divide)

    def _ConstantOfShape(self, node, inputs, attrs):
        value = attrs.get("value", np.zeros(1, dtype=np.float32))
        if value.size != 1:
            raise bad(f"{node_label(node)} has a value of {value.size} elements; expected one")
        return self._filled(node, value.reshape(()), inputs[0])

    def _Expand(self, node, inputs, attrs):
        x = self._const(inputs[0], node) if not isinstance(inputs[0], Filled) else inputs[0]
        shape = inputs[1]
        if isinstance(x, Filled) or has_batch(shape):
            value = x.value if isinstance(x, Filled) else x
            if value.size != 1:
                raise bad(f"{node_label(node)} expands a {value.shape} tensor to a batch-sized shape; barenet "
                          "folds only single values")
            return self._filled(node, value.reshape(()), shape)
        dims = int_list(shape, "shape", node)
        out_shape = np.broadcast_shapes(x.shape, tuple(dims))
        self._size_ok(out_shape, node)
        return np.broadcast_to(x, out_shape).copy()

    def _filled(self, node, value: np.ndarray, shape: Any):
        if not isinstance(shape, np.ndarray) or shape.ndim != 1:
            raise bad(f"{node_label(node)} needs a constant 1-d shape")
        dims = list(shape)
        for d in dims:
            if d is not BATCH and (not isinstance(d, (int, np.integer)) or d < 0):
                raise bad(f"{node_label(node)} has shape {dims}; expected sizes >= 0")
        if any(d is BATCH for d in dims):
            if sum(d is BATCH for d in dims) != 1:
                raise bad(f"{node_label(node)} uses the batch size twice in one shape")
            return Filled(value, tuple(d if d is BATCH else int(d) for d in dims))
        self._size_ok(tuple(int(d) for d in dims), node)
        return np.full(tuple(int(d) for d in dims), value, dtype=value.dtype)

    # ----------------------------------------------------------------- masks, position ids and scales
    def _Equal(self, node, inputs, attrs):
        return self._binary(node, inputs, np.equal)

    def _And(self, node, inputs, attrs):
        return self._binary(node, inputs, np.logical_and)

    def _Not(self, node, inputs, attrs):
        return np.logical_not(self._const(inputs[0], node))

    def _Mod(self, node, inputs, attrs):
        def mod(a, b):
            if a.dtype.kind in "iu" and np.any(b == 0):
                raise bad(f"{node_label(node)} takes an integer modulo zero")
            # fmod=1 (or floats, where ONNX requires it) keeps the dividend's sign, as C's fmod
            return np.fmod(a, b) if attrs.get("fmod", 0) or a.dtype.kind == "f" else np.mod(a, b)
        return self._binary(node, inputs, mod)

    def _Sqrt(self, node, inputs, attrs):
        x = self._const(inputs[0], node)
        if x.dtype.kind != "f" or has_batch(x):
            raise bad(f"{node_label(node)} takes the square root of a non-float constant")
        return np.sqrt(x)

    def _Where(self, node, inputs, attrs):
        cond, a, b = (self._const(x, node) for x in inputs)
        if has_batch(a) or has_batch(b) or cond.dtype != np.bool_:
            raise bad(f"{node_label(node)} selects with a non-boolean condition or between batch-sized values")
        self._size_ok(np.broadcast_shapes(cond.shape, a.shape, b.shape), node)
        if a.dtype != b.dtype:
            raise bad(f"{node_label(node)} mixes dtypes {a.dtype} and {b.dtype}")
        return np.where(cond, a, b)

    def _GatherElements(self, node, inputs, attrs):
        data, idx = self._const(inputs[0], node), self._const(inputs[1], node)
        axis = attrs.get("axis", 0)
        if idx.dtype.kind not in "iu" or data.ndim != idx.ndim or not -data.ndim <= axis < data.ndim:
            raise bad(f"{node_label(node)} gathers {idx.dtype} indices of rank {idx.ndim} along axis {axis} of a "
                      f"{data.ndim}-d tensor")
        n = data.shape[axis]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise bad(f"{node_label(node)} gathers an index outside an axis of length {n}")
        return np.take_along_axis(data, np.where(idx < 0, idx + n, idx), axis=axis)

    def _Range(self, node, inputs, attrs):
        start, limit, delta = (self._const(x, node) for x in inputs)
        if any(v.size != 1 or has_batch(v) for v in (start, limit, delta)) or float(delta.reshape(-1)[0]) == 0:
            raise bad(f"{node_label(node)} needs scalar start, limit and a non-zero delta")
        start, limit, delta = (v.reshape(()) for v in (start, limit, delta))
        count = max(int(np.ceil((limit - start) / delta)), 0)
        self._size_ok((count,), node)
        return (start + delta * np.arange(count)).astype(start.dtype)

    def _Trilu(self, node, inputs, attrs):
        x = self._const(inputs[0], node)
        k = int_list(inputs[1], "k", node) if len(inputs) > 1 and inputs[1] is not None else [0]
        if x.ndim < 2 or has_batch(x) or len(k) != 1:
            raise bad(f"{node_label(node)} takes a triangle of a {x.ndim}-d constant with k={k}")
        return np.triu(x, k[0]) if attrs.get("upper", 1) else np.tril(x, k[0])

    def _ReduceMax(self, node, inputs, attrs):
        x = self._const(inputs[0], node)
        axes = int_list(inputs[1], "axes", node) if self.opset >= 18 and len(inputs) > 1 and inputs[1] is not None \
            else attrs.get("axes")
        if has_batch(x) or x.size == 0 or axes is None:
            raise bad(f"{node_label(node)} takes the maximum of an empty or batch-sized constant, or over no axes")
        return np.max(x, axis=tuple(axes), keepdims=bool(attrs.get("keepdims", 1)))

    @staticmethod
    def _const(x: Any, node: Any) -> np.ndarray:
        if isinstance(x, Filled):
            raise bad(f"{node_label(node)} needs its input as a constant, but it depends on the batch size")
        if not isinstance(x, np.ndarray):
            raise bad(f"{node_label(node)} is missing an input")
        return x


def _as_array(x: Any) -> Any:
    """NumPy returns scalars from 0-d operations (and the bare element from ``take`` on object arrays)."""
    if isinstance(x, (np.ndarray, Filled)) or x is None:
        return x
    return np.array(x, dtype=object) if x is BATCH else np.asarray(x)


def slice_arguments(node: Any, inputs: list[Any], attrs: dict[str, Any], opset: int) -> tuple:
    """``(starts, ends, axes, steps)`` of a Slice node: attributes before opset 10, constant inputs since."""
    if opset < 10:
        return attrs.get("starts", []), attrs.get("ends", []), attrs.get("axes"), None
    starts = int_list(inputs[1], "starts", node)
    ends = int_list(inputs[2], "ends", node)
    axes = int_list(inputs[3], "axes", node) if len(inputs) > 3 and inputs[3] is not None else None
    steps = int_list(inputs[4], "steps", node) if len(inputs) > 4 and inputs[4] is not None else None
    return starts, ends, axes, steps


def slice_index(shape: list[Any], starts: list[int], ends: list[int], axes: list[int] | None,
                steps: list[int] | None, node: Any) -> list[slice]:
    """Per-axis ``slice`` objects for ONNX Slice over a tensor of ``shape`` (sizes may include BATCH)."""
    n = len(starts)
    axes = list(range(n)) if axes is None else axes
    steps = [1] * n if steps is None else steps
    if not len(ends) == len(axes) == len(steps) == n:
        raise bad(f"{node_label(node)} has starts, ends, axes and steps of different lengths")
    index = [slice(None)] * len(shape)
    seen = set()
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        if not -len(shape) <= a < len(shape) or a % len(shape) in seen:
            raise bad(f"{node_label(node)} slices axis {a} of a {len(shape)}-d tensor (or slices it twice)")
        if st == 0:
            raise bad(f"{node_label(node)} has step 0")
        a %= len(shape)
        seen.add(a)
        if shape[a] is BATCH:
            full = st == 1 and s == 0 and e >= 2**62 or st == -1 and s >= 2**62 and e <= -2**62
            if not full:
                raise bad(f"{node_label(node)} slices the batch axis")
            continue
        start, stop, step = slice(s, e, st).indices(shape[a])
        index[a] = slice(start, None if stop < 0 else stop, step)  # a stop of -1 (before the first) is no index
    return index


def resolve_shape(src: list[Any], target: list[Any], allowzero: int, node: Any) -> list[Any]:
    """ONNX Reshape's target with 0 (copy) and -1 (infer) resolved; ``src`` and the result may hold BATCH
    once, which only a -1 or an explicit BATCH entry can take."""
    out = []
    for i, d in enumerate(target):
        if d is not BATCH and d == 0 and not allowzero:
            if i >= len(src):
                raise bad(f"{node_label(node)} copies dimension {i} of a {len(src)}-d tensor")
            d = src[i]
        elif d is not BATCH and d < -1:
            raise bad(f"{node_label(node)} has size {d} in its target shape")
        out.append(d)
    if sum(d is not BATCH and d == -1 for d in out) > 1:
        raise bad(f"{node_label(node)} has more than one -1 in its target shape")
    known_src = int(np.prod([d for d in src if d is not BATCH], dtype=object))
    known_dst = int(np.prod([d for d in out if d is not BATCH and d != -1], dtype=object))
    src_batch, dst_batch = any(d is BATCH for d in src), sum(d is BATCH for d in out)
    if dst_batch > 1:
        raise bad(f"{node_label(node)} uses the batch size twice in its target shape")
    if -1 in [d for d in out if d is not BATCH]:
        k = [i for i, d in enumerate(out) if d is not BATCH and d == -1][0]
        if src_batch and not dst_batch:
            if known_dst != known_src:
                raise bad(f"{node_label(node)} reshapes {src} to {target}, mixing the batch axis with others")
            out[k] = BATCH
        else:
            if known_dst == 0 or known_src % known_dst:
                raise bad(f"{node_label(node)} cannot reshape {src} to {target}")
            out[k] = known_src // known_dst
    else:
        if src_batch != bool(dst_batch):
            raise bad(f"{node_label(node)} reshapes {src} to {target}, fixing the batch size")
        if known_dst != known_src:
            raise bad(f"{node_label(node)} cannot reshape {src} ({known_src} values per sample) to {target}")
    return out
