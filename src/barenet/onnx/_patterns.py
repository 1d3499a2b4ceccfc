"""Subgraphs recognized as one operator before the importer walks the chain.

Exporters write some activations and layer normalization as small subgraphs in which one tensor feeds several
operators (``x * sigmoid(x)``, ``x * 0.5 * (1 + erf(x / sqrt 2))``, the mean and variance arithmetic of a layer
norm), which the chain walk would refuse as branches. :func:`fuse` replaces each such subgraph by the one ONNX
operator it computes (``Gelu``, ``Swish``, ``Mish``, ``HardSwish``, ``HardSigmoid``, ``Softplus``,
``LayerNormalization``); the importer then maps it as if the file held that operator.

Element-wise subgraphs are recognized by what they compute, not by their shape: from a tensor ``x``, every
operator that reads it or what it feeds (element-wise operators whose other inputs are scalar constants), up to
the first tensor through which all of them flow. That subgraph is evaluated in float64 on probe values of ``x``
and compared with barenet's activations (to 1e-5, as float32 constants such as 0.044715 are rounded); so
PyTorch's, barenet's own and hand-written arrangements of the same arithmetic are all recognized, and a subgraph
that computes anything else is left as it is (and refused by the walk). Layer normalization is matched by its
shape: ``ReduceMean``, ``Sub``, ``Pow`` (or ``Mul``) by 2, ``ReduceMean``, ``Add`` epsilon, ``Sqrt``, ``Div``,
then optionally ``Mul`` by a constant scale and ``Add`` of a constant shift, over trailing axes given as negative
numbers (so that no rank needs to be known).
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from .. import functional as F
from ..errors import ModelFileError
from ._checks import tensor_array
from ._fold import Folder, attributes

#: Operators an element-wise subgraph may hold.
ELEMENTWISE = frozenset({
    "Add", "Sub", "Mul", "Div", "Pow", "Neg", "Abs", "Exp", "Log", "Sqrt", "Reciprocal", "Erf", "Tanh", "Sigmoid",
    "Softplus", "Relu", "Clip", "Max", "Min", "Less", "Greater", "Where", "HardSigmoid", "HardSwish", "Mish",
    "Identity",
})
#: Most operators in one element-wise subgraph (barenet's own float64 exact GELU has about 200).
MAX_REGION = 256
#: How many times one subgraph, growing, is compared with the activations before it is given up.
MAX_TRIES = 4
#: Where a subgraph is compared with the activations.
PROBES = np.linspace(-8.0, 8.0, 161)
TOLERANCE = 1e-5

#: Activation -> (its values, the ONNX operator and attributes that stand for it).
ACTIVATIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str, dict[str, Any]]] = {
    "gelu": (F.gelu, "Gelu", {"approximate": "none"}),
    "gelu_tanh": (lambda v: F.gelu(v, approximate=True), "Gelu", {"approximate": "tanh"}),
    "silu": (F.silu, "Swish", {}),
    "mish": (F.mish, "Mish", {}),
    "hard_swish": (F.hard_swish, "HardSwish", {}),
    "hard_sigmoid": (F.hard_sigmoid, "HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}),
    "softplus": (F.softplus, "Softplus", {}),
}


def fuse(graph: Any, order: list[Any], opset: int, budget: int) -> list[Any]:
    """``order`` (the graph's nodes in topological order) with every recognized subgraph replaced by one node,
    placed where the subgraph's last node was (so the order stays topological)."""
    from onnx import helper

    consts = _constants(graph, order, opset, budget)
    consumers: dict[str, list[int]] = defaultdict(list)
    for k, node in enumerate(order):
        for name in node.input:
            if name:
                consumers[name].append(k)
    outputs = {o.name for o in graph.output}
    taken: set[int] = set()
    fused: dict[int, Any] = {}
    tensors = [i.name for i in graph.input] + [out for node in order for out in node.output if out]
    for x in tensors:
        if x in consts or not consumers[x] or any(k in taken for k in consumers[x]):
            continue
        try:
            found = _layer_norm(x, order, consumers, consts, outputs, opset) or \
                _elementwise(x, order, consumers, consts, outputs, opset)
        except (IndexError, TypeError, ValueError):  # malformed operators: left for the walk to refuse
            found = None
        if found is None:
            continue
        members, op, inputs, y, attrs = found
        last = max(members)
        name = f"{order[last].name or y} (fused from {len(members)} nodes)"
        fused[last] = helper.make_node(op, inputs, [y], name=name, **attrs)
        taken |= members
    return [fused[k] if k in fused else node for k, node in enumerate(order) if k not in taken or k in fused]


def _constants(graph: Any, order: list[Any], opset: int, budget: int) -> dict[str, np.ndarray]:
    """Initializers and the outputs of ``Constant`` nodes (the graph was checked, so these are safe to read)."""
    consts = {t.name: tensor_array(t) for t in graph.initializer}
    folder = Folder(budget, opset)
    for node in order:
        if node.op_type == "Constant" and len(node.output) == 1:
            try:
                consts[node.output[0]] = np.asarray(folder.fold(node, [], attributes(node, opset))[0])
            except ModelFileError:  # an unreadable Constant is the walk's to refuse
                continue
    return consts


def _scalar(consts: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    value = consts.get(name)
    if value is None or value.size != 1 or value.dtype.kind not in "fiu":
        return None
    return value.astype(np.float64).reshape(())


def _elementwise(x, order, consumers, consts, outputs, opset):
    """The element-wise subgraph from ``x`` and the activation it computes, or ``None``.

    Operators are taken in topological order among the readers of the subgraph's tensors (a heap of their
    positions), so the work is bounded by the subgraph's size, not the graph's; the subgraph is compared with the
    activations whenever everything flows into one tensor, at most :data:`MAX_TRIES` times.
    """
    pending = {x: len(consumers[x]) + (x in outputs)}
    members: set[int] = set()
    heap = sorted(set(consumers[x]))
    tries = 0
    while heap:
        k = heapq.heappop(heap)
        if k in members:
            continue
        node = order[k]
        if node.op_type not in ELEMENTWISE or len(members) >= MAX_REGION:
            return None
        if any(name and name not in pending and _scalar(consts, name) is None for name in node.input):
            return None  # reads a tensor from outside, or a constant that is not a scalar (a bias)
        members.add(k)
        for name in node.input:
            if name in pending:
                pending[name] -= 1
        for out in node.output:
            if out:
                pending[out] = len(consumers[out]) + (out in outputs)
                for user in consumers[out]:
                    heapq.heappush(heap, user)
        open_ = [name for name, n in pending.items() if n > 0]
        if len(open_) == 1 and len(members) > 1 and open_[0] in node.output:
            kind = _identify([order[m] for m in sorted(members)], x, open_[0], consts, opset)
            if kind is not None:
                _, op, attrs = ACTIVATIONS[kind]
                return members, op, [x], open_[0], attrs
            tries += 1
            if tries >= MAX_TRIES:
                return None
    return None


def _identify(nodes: list[Any], x: str, y: str, consts: dict[str, np.ndarray], opset: int) -> str | None:
    """The activation ``nodes`` compute from ``x`` to ``y``, found by evaluating them on :data:`PROBES`."""
    values: dict[str, Any] = {x: PROBES}
    with np.errstate(all="ignore"):
        for node in nodes:
            args = [values[n] if n in values else _scalar(consts, n) if n else None for n in node.input]
            result = _evaluate(node, args, opset)
            if result is None:
                return None
            values[node.output[0]] = result
        got = np.asarray(values[y], dtype=np.float64)
        for kind, (reference, _, _) in ACTIVATIONS.items():
            want = reference(PROBES)
            if got.shape == want.shape and np.all(np.abs(got - want) <= TOLERANCE * np.maximum(1, np.abs(want))):
                return kind
    return None


def _evaluate(node: Any, args: list[Any], opset: int) -> Any:
    """One element-wise ONNX operator in float64 (``None`` for one it cannot evaluate here)."""
    op, a = node.op_type, args[0]
    binary = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide, "Pow": np.power,
              "Less": np.less, "Greater": np.greater}
    unary = {"Neg": np.negative, "Abs": np.abs, "Exp": np.exp, "Log": np.log, "Sqrt": np.sqrt, "Erf": F.erf,
             "Reciprocal": np.reciprocal, "Tanh": np.tanh, "Sigmoid": F.sigmoid, "Softplus": F.softplus,
             "Relu": F.relu, "Mish": F.mish, "Identity": lambda v: v}
    if op in binary and len(args) == 2:
        return binary[op](a, args[1])
    if op in unary:
        return unary[op](np.asarray(a, dtype=np.float64))
    if op in ("Max", "Min"):
        return (np.maximum if op == "Max" else np.minimum).reduce(np.broadcast_arrays(*args))
    if op == "Where" and len(args) == 3:
        return np.where(*args)
    if op == "Clip" and opset >= 11:
        low = args[1] if len(args) > 1 and args[1] is not None else -np.inf
        high = args[2] if len(args) > 2 and args[2] is not None else np.inf
        return np.clip(a, low, high)
    if op in ("HardSigmoid", "HardSwish"):
        attrs = attributes(node, opset) if op == "HardSigmoid" else {}
        gate = np.clip(attrs.get("alpha", 0.2 if op == "HardSigmoid" else 1 / 6) * a + attrs.get("beta", 0.5), 0, 1)
        return gate if op == "HardSigmoid" else a * gate
    return None


def _only(consumers, outputs, name: str, order) -> Any | None:
    """The one node that reads ``name`` (which is no graph output), or ``None``."""
    users = consumers[name]
    return order[users[0]] if len(users) == 1 and name not in outputs else None


def _reduce_axes(node: Any, consts: dict[str, np.ndarray], opset: int) -> list[int] | None:
    if node.op_type != "ReduceMean" or attributes(node, opset).get("keepdims", 1) != 1:
        return None
    if opset >= 18:
        axes = consts.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        return None if axes is None or axes.dtype.kind not in "iu" else [int(a) for a in axes.reshape(-1)]
    return attributes(node, opset).get("axes")


def _layer_norm(x, order, consumers, consts, outputs, opset):
    """``(members, "LayerNormalization", inputs, y, attrs)`` for the decomposed layer norm from ``x``, or ``None``."""
    users = [order[k] for k in consumers[x]]
    # x may have other readers too (a pre-norm block's residual branch): the mean and the Sub are found by
    # what they read
    mean_node = next((n for n in users if n.op_type == "ReduceMean"), None)
    sub = None if mean_node is None else next(
        (n for n in users if n.op_type == "Sub" and list(n.input) == [x, mean_node.output[0]]), None)
    axes = _reduce_axes(mean_node, consts, opset) if mean_node is not None else None
    if sub is None or not axes or _only(consumers, outputs, mean_node.output[0], order) is not sub:
        return None
    if sorted(axes) != list(range(-len(axes), 0)):
        return None  # not the trailing axes counted from the end
    d = sub.output[0]
    d_users = [order[k] for k in consumers[d]]
    square = next((n for n in d_users if n.op_type in ("Pow", "Mul") and n.input[0] == d), None)
    div = next((n for n in d_users if n.op_type == "Div" and list(n.input[:1]) == [d]), None)
    if len(d_users) != 2 or square is None or div is None or d in outputs:
        return None
    second = square.input[1]
    if not (square.op_type == "Pow" and _scalar(consts, second) == 2 or square.op_type == "Mul" and second == d):
        return None
    var = _only(consumers, outputs, square.output[0], order)
    if var is None or _reduce_axes(var, consts, opset) != axes:
        return None
    add = _only(consumers, outputs, var.output[0], order)
    if add is None or add.op_type != "Add":
        return None
    eps = _scalar(consts, next((n for n in add.input if n != var.output[0]), ""))
    sqrt = _only(consumers, outputs, add.output[0], order)
    if eps is None or not eps > 0 or sqrt is None or sqrt.op_type != "Sqrt" or \
            _only(consumers, outputs, sqrt.output[0], order) is not div or list(div.input) != [d, sqrt.output[0]]:
        return None
    nodes = [mean_node, sub, square, var, add, sqrt, div]
    y, affine = div.output[0], {}
    for op in ("Mul", "Add"):  # the scale, then the shift, each when it follows
        step = _only(consumers, outputs, y, order)
        other = next((n for n in step.input if n != y), "") if step is not None and step.op_type == op else ""
        if other in consts and consts[other].dtype.kind == "f":
            nodes.append(step)
            affine[op], y = other, step.output[0]
    index = {id(n): k for k, n in enumerate(order)}
    inputs = [x, affine.get("Mul", "")] + ([affine["Add"]] if "Add" in affine else [])
    return ({index[id(n)] for n in nodes}, "LayerNormalization", inputs, y,
            {"axis": -len(axes), "epsilon": float(eps)})
