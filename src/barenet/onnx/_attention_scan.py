"""Find the subgraphs of an ONNX graph that compute multi-head attention, by their shape.

Exporters write attention as a few dozen operators: projections (``MatMul``/``Gemm`` by a constant, ``Add`` of a
bias), operators that only move values about to split the heads (``Reshape``, ``Transpose``, ``Squeeze``,
``Unsqueeze``, ``Gather``/``Split``/``Slice`` of the packed q, k, v, a ``Mul`` by a scale), the scores
``MatMul`` of two computed tensors, a constant mask (``Add`` or ``Where``), ``Softmax``, a guard against
all-masked rows (``IsNaN`` + ``Where``), the ``MatMul`` with the values, the heads joined again and the output
projection. PyTorch's ``nn.MultiheadAttention`` folds the batch into the heads axis (``(time, batch*heads, d)``),
which no per-sample layer can express; so the whole subgraph is imported as one
:class:`~barenet.layers.MultiHeadAttention`.

:func:`find_regions` only picks the nodes out (from each ``Softmax``: back to the scores ``MatMul``, forward to
the ``MatMul`` with the values, back from the three operands through moves to their projections, forward from the
result through moves to the output projection and the moves after it). Whether they compute attention, and with
which weights, is decided when the importer walks them (:mod:`._attention`): by following every value through
the moves, not by the operators' arrangement.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ._fold import attributes

#: Operators that only move values (or scale them by a constant) inside an attention subgraph.
MOVES = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity", "Dropout", "Gather",
                   "Split", "Slice", "Cast", "Mul", "Div"})
#: Operators between the scores product and the softmax (scale, constant mask).
SCORE_OPS = frozenset({"Add", "Sub", "Mul", "Div", "Where", "Cast", "Identity"})
#: Operators between the softmax and the product with the values (no-op guards and masks, inference dropout).
PROB_OPS = frozenset({"Mul", "Dropout", "Identity", "Cast"})


@dataclass(eq=False)
class Region:
    """One attention subgraph: its nodes (by ``id``) and the tensor it ends in."""

    label: str
    end: str
    nodes: set[int] = field(default_factory=set)


class _Graph:
    """Producers, consumers and which tensors depend on the graph inputs (not only on their shapes)."""

    def __init__(self, graph: Any, order: list[Any]) -> None:
        constants = {t.name for t in graph.initializer}
        self.dep = {i.name for i in graph.input if i.name not in constants}
        self.producer: dict[str, Any] = {}
        self.consumers: dict[str, list[Any]] = defaultdict(list)
        self.outputs = {o.name for o in graph.output}
        for node in order:
            for name in node.input:
                if name:
                    self.consumers[name].append(node)
            for name in node.output:
                if name:
                    self.producer[name] = node
            if node.op_type != "Shape" and any(name in self.dep for name in node.input if name):
                self.dep.update(name for name in node.output if name)

    def data_inputs(self, node: Any) -> list[str]:
        return [name for name in node.input if name in self.dep]

    def is_move(self, node: Any) -> bool:
        """A move reads one computed tensor (its first input; either side of a ``Mul``) and constants."""
        data = self.data_inputs(node)
        if node.op_type not in MOVES or len(data) != 1 or not node.input:
            return False
        return node.op_type == "Mul" or node.input[0] == data[0]

    def is_projection(self, node: Any) -> bool:
        """``MatMul``/``Gemm`` of a computed tensor by constant weights."""
        return node.op_type in ("MatMul", "Gemm") and len(node.input) >= 2 and bool(node.input[1]) \
            and self.data_inputs(node) == [node.input[0]]

    def is_bias(self, node: Any) -> bool:
        return node.op_type == "Add" and len(self.data_inputs(node)) == 1

    def is_product(self, node: Any) -> bool:
        """``MatMul`` of two computed tensors."""
        return node.op_type == "MatMul" and len(node.input) == 2 and all(n in self.dep for n in node.input)

    def only_user(self, name: str) -> Any | None:
        users = self.consumers.get(name, [])
        return users[0] if len(users) == 1 and name not in self.outputs else None


def find_regions(graph: Any, order: list[Any]) -> dict[int, Region]:
    """``id(node) -> Region`` for every node of every attention subgraph found (each node in at most one)."""
    g = _Graph(graph, order)
    found: dict[int, Region] = {}
    for node in order:
        if node.op_type != "Softmax" or not g.data_inputs(node):
            continue
        try:
            region = _region(g, node)
        except (IndexError, KeyError, ValueError, TypeError):  # malformed operators: left for the walk to refuse
            region = None
        if region is None or any(k in found for k in region.nodes):
            continue
        for k in region.nodes:
            found[k] = region
    return found


def _region(g: _Graph, softmax: Any) -> Region | None:
    members: list[Any] = [softmax]
    scores = _back_through(g, softmax.input[0], SCORE_OPS, members)
    product = g.producer.get(scores) if scores else None
    if product is None or not g.is_product(product):
        return None
    members.append(product)
    values = _probabilities(g, softmax, members)
    if values is None:
        return None
    sources: list[str] = []
    for operand in (product.input[0], product.input[1], values.input[1]):
        if not _back_to_projection(g, operand, members, sources):
            return None
    end = _forward_to_output(g, values.output[0], members)
    if end is None:
        return None
    _take_source_moves(g, sources, members)
    ids = {id(n) for n in members}
    for n in members:  # every value inside feeds the region only (shape reads aside)
        for name in n.output:
            if name and name != end and (name in g.outputs or any(
                    id(user) not in ids and user.op_type != "Shape" for user in g.consumers.get(name, []))):
                return None
    return Region(f"the attention around {softmax.op_type} node {softmax.name or softmax.output[0]!r}", end, ids)


def _back_through(g: _Graph, name: str, ops: frozenset[str], members: list[Any]) -> str | None:
    """From ``name`` back through single-use operators of ``ops`` that read one computed tensor."""
    while True:
        node = g.producer.get(name)
        if node is None or node.op_type not in ops or g.only_user(name) is None:
            return name
        data = g.data_inputs(node)
        if len(data) != 1 or node.op_type == "Where" and (len(node.input) != 3 or node.input[0] in g.dep):
            return name
        members.append(node)
        name = data[0]


def _probabilities(g: _Graph, softmax: Any, members: list[Any]) -> Any | None:
    """The ``MatMul`` of the attention weights with the values, after the no-op guards that may follow the
    softmax (``Where(IsNaN(p), 0, p)``, a ``Mul`` by a constant, inference ``Dropout``)."""
    name = softmax.output[0]
    while True:
        users = g.consumers.get(name, [])
        if name in g.outputs or not users:
            return None
        nan = next((u for u in users if u.op_type == "IsNaN"), None)
        if nan is not None and len(users) == 2:
            where = next((u for u in users if u.op_type == "Where"), None)
            if where is None or len(where.input) != 3 or g.only_user(nan.output[0]) is not where \
                    or list(where.input[::2]) != [nan.output[0], name]:
                return None
            members += [nan, where]
            name = where.output[0]
            continue
        if len(users) != 1:
            return None
        user = users[0]
        if user.op_type == "MatMul" and user.input[0] == name and g.is_product(user):
            members.append(user)
            return user
        if user.op_type not in PROB_OPS or g.data_inputs(user) != [name]:
            return None
        members.append(user)
        name = user.output[0]


def _back_to_projection(g: _Graph, name: str, members: list[Any], sources: list[str]) -> bool:
    """From an operand of a product back through moves and a bias to its projection (``MatMul``/``Gemm``)."""
    while True:
        node = g.producer.get(name)
        if node is None:
            return False
        if any(node is m for m in members):  # a packed projection reached again from another operand
            return True
        if g.is_projection(node):
            members.append(node)
            sources.append(node.input[0])
            return True
        if not (g.is_move(node) or g.is_bias(node)):
            return False
        members.append(node)
        name = g.data_inputs(node)[0]


def _forward_to_output(g: _Graph, name: str, members: list[Any]) -> str | None:
    """From the attention's result through moves to the output projection, then through the bias and moves
    that follow it (each the only reader of what it reads); the name of the last tensor."""
    projected = False
    while True:
        user = g.only_user(name)
        if user is None or g.data_inputs(user) != [name]:
            return name if projected else None
        if not projected and g.is_projection(user):
            projected = True
        elif not (g.is_move(user) or projected and g.is_bias(user)):
            return name if projected else None
        members.append(user)
        name = user.output[0]
        if user.op_type == "Split" or not name:
            return None


def _take_source_moves(g: _Graph, sources: list[str], members: list[Any]) -> None:
    """Moves right before the projections (PyTorch transposes to time-major, Hugging Face's GPT-2 flattens
    the batch into the rows of a ``Gemm``) belong to the region when nothing else reads their output."""
    ids = {id(n) for n in members}
    pending = list(dict.fromkeys(sources))
    while pending:
        name = pending.pop()
        node = g.producer.get(name)
        users = g.consumers.get(name, [])
        if node is None or not g.is_move(node) or name in g.outputs or any(id(u) not in ids for u in users):
            continue
        members.append(node)
        ids.add(id(node))
        pending.append(g.data_inputs(node)[0])


def unflatten_rows(graph: Any, order: list[Any], consts: dict[str, Any], skip: set[int], opset: int) -> list[Any]:
    """``order`` with each ``Reshape(x, [rows, d])`` -> ``Gemm`` -> ``Reshape`` (how Hugging Face's GPT-2 writes
    its ``Conv1D`` projections: the batch folded into the rows) replaced by ``MatMul(x, B)`` (+ ``Add`` of ``C``)
    read by the same ``Reshape``\\s: a row-major reshape keeps the order of the values, so the product over
    ``x``'s last axis reshaped is the same tensor (and where ``x``'s last axis is not ``d``, the walk refuses the
    ``MatMul``). Nodes in ``skip`` (attention subgraphs, which read such folds themselves) are left alone."""
    from onnx import NodeProto, helper

    g = _Graph(graph, order)
    replaced: dict[int, list[Any]] = {}
    renamed: dict[str, str] = {}
    for gemm in order:
        if gemm.op_type != "Gemm" or id(gemm) in skip or not g.is_projection(gemm) or len(gemm.output) != 1:
            continue
        flat = g.producer.get(gemm.input[0])
        users = g.consumers.get(gemm.output[0], [])
        target = consts.get(flat.input[1]) if flat is not None and flat.op_type == "Reshape" \
            and len(flat.input) == 2 else None
        b = consts.get(gemm.input[1])
        attrs = attributes(gemm, opset)
        if target is None or b is None or getattr(b, "ndim", 0) != 2 or len(gemm.input) > 3 \
                or target.dtype.kind not in "iu" or b.dtype.kind != "f" or g.only_user(flat.output[0]) is not gemm \
                or id(flat) in skip or target.shape != (2,) or attrs.get("transA", 0) \
                or int(target[1]) != b.shape[1 if attrs.get("transB", 0) else 0] \
                or not users or gemm.output[0] in g.outputs or any(u.op_type != "Reshape" for u in users):
            continue
        y = gemm.output[0]
        nodes, w = [], gemm.input[1]
        if attrs.get("transB", 0):
            nodes.append(helper.make_node("Transpose", [w], [f"{y}/B^T"], name=f"{gemm.name}/B^T"))
            w = f"{y}/B^T"
        product = f"{y}/rows" if attrs.get("alpha", 1.0) == 1.0 and len(gemm.input) < 3 else f"{y}/product"
        nodes.append(helper.make_node("MatMul", [flat.input[0], w], [product], name=f"{gemm.name}/MatMul"))
        if attrs.get("alpha", 1.0) != 1.0:
            nodes.append(helper.make_node("Constant", [], [f"{y}/alpha"], value_float=float(attrs["alpha"])))
            scaled = f"{y}/rows" if len(gemm.input) < 3 else f"{y}/scaled"
            nodes.append(helper.make_node("Mul", [product, f"{y}/alpha"], [scaled], name=f"{gemm.name}/alpha"))
            product = scaled
        if len(gemm.input) > 2 and gemm.input[2]:
            bias = gemm.input[2]
            if attrs.get("beta", 1.0) != 1.0:
                nodes.append(helper.make_node("Constant", [], [f"{y}/beta"], value_float=float(attrs["beta"])))
                nodes.append(helper.make_node("Mul", [bias, f"{y}/beta"], [f"{y}/C"], name=f"{gemm.name}/beta"))
                bias = f"{y}/C"
            nodes.append(helper.make_node("Add", [product, bias], [f"{y}/rows"], name=f"{gemm.name}/Add"))
        replaced[id(flat)] = []
        replaced[id(gemm)] = nodes
        renamed[y] = f"{y}/rows"
    out = []
    for node in order:
        if id(node) in replaced:
            out += replaced[id(node)]
        elif any(name in renamed for name in node.input):
            copy = NodeProto()
            copy.CopyFrom(node)
            for k, name in enumerate(copy.input):
                copy.input[k] = renamed.get(name, name)
            out.append(copy)
        else:
            out.append(node)
    return out
