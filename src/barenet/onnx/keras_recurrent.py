"""LSTM and GRU layers that an exporter wrote out step by step, recognized as one ONNX ``LSTM``/``GRU`` node.

Keras 3 (``model.export(path, format="onnx")``, torch backend) writes its recurrent layers unrolled: the whole
sequence times the kernel (``Transpose`` to time-major, ``MatMul``, ``Add`` of the bias), then for each time step
a ``MatMul`` of the previous hidden state by the recurrent kernel (one constant, read at every step; at the
first step the state is zeros from ``ConstantOfShape``), the gate blocks cut apart with ``Slice`` and the cell
in ``Sigmoid``, ``Tanh``, ``Mul``, ``Add`` (and ``Sub`` for GRU); ``return_sequences`` stacks the steps
(``Unsqueeze``, ``Concat``, ``Transpose``), and a ``Bidirectional`` runs a second such recurrence on the sequence
reversed (``Slice`` with step -1), reverses its output back, and joins the two (``Concat``, ``Add``, ``Mul``).

:func:`fuse_recurrences` finds each recurrence by its recurrent kernel: a constant ``(units, gates*units)``
(4 gates: LSTM, 3: GRU) that ``MatMul`` nodes read, the first of them a zero state. It reads the kernel, the
recurrent kernel and the biases from the constants around those ``MatMul`` nodes, then checks the subgraph by
what it computes: the graph is evaluated in float64 on probe inputs, and a tensor after the last step must equal
what barenet's own :class:`~barenet.layers.LSTM` or :class:`~barenet.layers.GRU` (``reset_after=True``, Keras's
default), or a :class:`~barenet.layers.Bidirectional` of two of them, computes with those weights from that
input, to within :data:`TOLERANCE`. The subgraph between that input and that tensor (but for the nodes whose
outputs other operators read too, such as casts of the input, which stay) is then replaced by the nodes
barenet's own exporter writes for the layer (``Transpose``, ``LSTM``/``GRU``, ``Gather``), which the importer
maps to one layer holding exactly the file's weights, so the imported model fine-tunes as Keras's does. A
recurrence that computes anything else (another activation, a ``go_backwards`` layer on its own, states read
from outside) is refused, naming what differs.

The probe input is the graph's own tensor, evaluated from random graph inputs, where the operators before the
recurrence can be evaluated here (then its number of time steps is checked too); else a random sequence of as
many steps as the graph unrolls.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import layers as L
from ..errors import BarenetError, ModelFileError
from ._checks import TENSOR_TYPES, bad, node_label, tensor_array
from ._fold import FOLDABLE, Folder, attributes
from ._patterns import ELEMENTWISE
from ._patterns import _evaluate as elementwise
from .recurrent import _onnx_weights

#: Relative difference from barenet's layer within which a subgraph counts as computing it (the evaluation is
#: float64 on both sides, so a match differs by rounding only; another activation differs by far more).
TOLERANCE = 1e-7
#: Batch size of the probe inputs.
PROBE_BATCH = 3
#: How many tensors back from the kernel's ``MatMul`` the recurrence's input is looked for.
MAX_CHAIN = 16
#: Operators the input may pass through between the graph's tensor and the kernel's ``MatMul``.
_PLUMBING = frozenset({"Cast", "Identity", "Transpose", "Slice", "Reshape", "Squeeze", "Unsqueeze", "Flatten"})
#: Operators of the steps of Keras's LSTM and GRU; any other one in the steps is named when a recurrence is refused.
_STEP_OPS = frozenset({"MatMul", "Add", "Sub", "Mul", "Div", "Sigmoid", "Tanh", "Cast", "Identity", "Shape",
                       "Gather", "Slice", "Constant", "ConstantOfShape", "Concat", "Unsqueeze", "Squeeze",
                       "Transpose", "Reshape"})
_FLOAT_CASTS = {1: np.float64, 11: np.float64, 10: np.float16}
_KINDS = {4: "LSTM", 3: "GRU"}


@dataclass
class _Recurrence:
    """One unrolled recurrence: weights in the file's dtype, as barenet's layer holds them."""

    kind: str
    steps: list[int]  # positions of the MatMul nodes by the recurrent kernel, in order
    kernel_at: int  # position of the MatMul by the kernel
    weights: dict[str, np.ndarray]  # kernel (features, gates*units), recurrent_kernel, bias
    chain: list[str]  # candidates for the layer's input, nearest to the kernel's MatMul first
    label: str

    @property
    def units(self) -> int:
        return self.weights["recurrent_kernel"].shape[0]

    @property
    def features(self) -> int:
        return self.weights["kernel"].shape[0]

    def layer(self, dtype: Any, return_sequences: bool) -> L.Recurrent:
        """Barenet's layer holding these weights (cast to ``dtype``)."""
        if self.kind == "LSTM":
            layer: L.Recurrent = L.LSTM(self.units, return_sequences=return_sequences, unit_forget_bias=False)
        else:
            layer = L.GRU(self.units, return_sequences=return_sequences, reset_after=True)
        layer.build((len(self.steps), self.features), np.random.default_rng(0), np.dtype(dtype).name)
        for name, value in self.weights.items():
            layer.params[name][...] = value
        return layer


@dataclass
class _Match:
    """The nodes (positions) ``region`` that compute tensor ``y`` from tensor ``x`` as ``recurrences`` do."""

    recurrences: list[_Recurrence]  # one, or the forward then the backward direction
    x: str
    y: str
    region: set[int]
    return_sequences: bool
    merge: str | None = None


class _Graph:
    """Node positions, producers, consumers and constants of the graph (in the order the importer walks)."""

    def __init__(self, graph: Any, order: list[Any], opset: int, budget: int) -> None:
        self.order, self.opset, self.budget = order, opset, budget
        self._descendants: dict[str, set[str]] = {}
        self.outputs = {o.name for o in graph.output}
        self.names = {name for node in order for name in (*node.input, *node.output)} | \
            {v.name for v in (*graph.input, *graph.output, *graph.initializer)}
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[int]] = defaultdict(list)
        for k, node in enumerate(order):
            for name in node.output:
                if name:
                    self.producer[name] = k
            for name in node.input:
                if name:
                    self.consumers[name].append(k)
        initializers = {t.name: t for t in graph.initializer}
        self.inputs = [i for i in graph.input if i.name not in initializers]
        self.dynamic = {i.name for i in self.inputs}
        for node in order:
            if any(name in self.dynamic for name in node.input):
                self.dynamic.update(name for name in node.output if name)
        self.static = {name: tensor_array(t) for name, t in initializers.items()}
        evaluator = _Evaluator(self)
        for node in order:
            if node.op_type in FOLDABLE and not any(name in self.dynamic for name in node.input):
                args = [self.static.get(name) if name else None for name in node.input]
                if all(a is not None for a, name in zip(args, node.input, strict=True) if name):
                    for name, value in zip(node.output, evaluator.run(node, args) or [], strict=False):
                        if name and value is not None:
                            self.static[name] = value

    def label(self, k: int) -> str:
        return node_label(self.order[k])

    def through_casts(self, name: str, forward: bool) -> list[str]:
        """``name`` and the tensors that ``Cast``/``Identity`` nodes make of it (``forward``) or it of (back)."""
        out = [name]
        while len(out) <= MAX_CHAIN:
            if forward:
                nxt = [self.order[k].output[0] for k in self.consumers.get(out[-1], [])
                       if self.order[k].op_type in ("Cast", "Identity") and len(self.order[k].output)]
                if len(nxt) != 1:
                    return out
                out.append(nxt[0])
            else:
                k = self.producer.get(out[-1])
                if k is None or self.order[k].op_type not in ("Cast", "Identity"):
                    return out
                out.append(self.order[k].input[0])
        return out

    def descendants(self, name: str) -> set[str]:
        """The tensors computed from ``name`` (``name`` included)."""
        if name not in self._descendants:
            out = {name}
            start = self.producer.get(name, -1) + 1
            for node in self.order[start:]:
                if any(i in out for i in node.input):
                    out.update(o for o in node.output if o)
            self._descendants[name] = out
        return self._descendants[name]

    def ancestors(self, names: list[str]) -> set[int]:
        """Positions of the nodes the tensors ``names`` are computed from."""
        seen: set[int] = set()
        stack = [self.producer[n] for n in names if n in self.producer]
        while stack:
            k = stack.pop()
            if k in seen:
                continue
            seen.add(k)
            stack.extend(self.producer[n] for n in self.order[k].input if n in self.producer)
        return seen


class _Evaluator:
    """Evaluates the importer's operators on NumPy arrays (floats as float64); ``None`` where it cannot."""

    def __init__(self, g: _Graph) -> None:
        self.g = g
        self.folder = Folder(g.budget, g.opset)

    def run(self, node: Any, args: list[Any]) -> list[Any] | None:
        try:
            with np.errstate(all="ignore"):
                return self._run(node, args)
        except (BarenetError, ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError,
                ZeroDivisionError):
            return None

    def _run(self, node: Any, args: list[Any]) -> list[Any] | None:
        op, opset = node.op_type, self.g.opset
        attrs = attributes(node, opset)
        floats = any(isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in args)
        if op == "Cast" and attrs.get("to") in _FLOAT_CASTS and args[0].dtype.kind in "fiub":
            return [args[0].astype(_FLOAT_CASTS[attrs["to"]]).astype(np.float64)]
        if op == "MatMul":
            a, b = args
            if a.ndim < 2 or b.ndim != 2 or a.shape[-1] != b.shape[0] or a.size // a.shape[-1] * b.shape[1] > \
                    self.g.budget:
                return None
            return [np.matmul(a, b)]
        if op in ELEMENTWISE and floats:
            out = elementwise(node, args, opset)
            return None if out is None else [np.asarray(out, dtype=np.float64)]
        if op in FOLDABLE:
            out = self.folder.fold(node, args, attrs)
            self.folder.total = 0  # each result is checked against the budget; the probes are small
            return [o.astype(np.float64) if isinstance(o, np.ndarray) and o.dtype.kind == "f" and floats else o
                    for o in out]
        return None

    def forward(self, seeds: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
        """Values of the tensors computed from ``seeds`` by the nodes at positions ``start`` to ``stop``."""
        values = dict(seeds)
        for node in self.g.order[start:stop]:
            names = [n for n in node.input if n]
            if not any(n in values for n in names) or \
                    not all(n in values or n in self.g.static for n in names):
                continue
            args = [values.get(n, self.g.static.get(n)) if n else None for n in node.input]
            for name, value in zip(node.output, self.run(node, args) or [], strict=False):
                if name and isinstance(value, np.ndarray) and value.dtype != object:
                    values[name] = value
        return values


def fuse_recurrences(graph: Any, order: list[Any], opset: int, budget: int) -> list[Any]:
    """``order`` with each unrolled LSTM/GRU (or Bidirectional pair of them) replaced by the nodes of one
    recurrent operator; :class:`~barenet.errors.ModelFileError` for an unrolled recurrence that computes
    anything else."""
    if not _may_hold_recurrence(graph, order):
        return order
    g = _Graph(graph, order, opset, budget)
    found = _recurrences(g)
    if not found:
        return order
    evaluator = _Evaluator(g)
    values = evaluator.forward(_graph_probes(g), 0, max(r.steps[-1] for r in found) + _window(found))
    matches = [m for cluster in _clusters(found) for m in _match_cluster(g, evaluator, cluster, values)]
    replaced: dict[int, list[Any]] = {}
    removed: set[int] = set()
    for m in matches:
        if m.region & removed:
            raise bad(f"{m.recurrences[0].label} shares operators with another recurrence; barenet imports each "
                      "recurrent layer from operators of its own")
        removed |= m.region
        replaced[g.producer[m.y]] = _nodes(m, g.names)
    out = []
    for k, node in enumerate(order):
        if k in replaced:
            out.extend(replaced[k])
        elif k not in removed:
            out.append(node)
    return out


# --------------------------------------------------------------------- finding the recurrences
def _may_hold_recurrence(graph: Any, order: list[Any]) -> bool:
    """A ``MatMul`` multiplies zeros from ``ConstantOfShape`` (through casts) by a stored constant shaped like a
    recurrent kernel: checked on the nodes alone, before any array is read."""
    dims = {t.name: tuple(t.dims) for t in graph.initializer}
    made_by: dict[str, Any] = {}
    for node in order:
        for name in node.output:
            made_by[name] = node
        if node.op_type == "Constant" and len(node.output) == 1:
            for a in node.attribute:
                if a.name == "value":
                    dims[node.output[0]] = tuple(a.t.dims)
        elif node.op_type == "Identity" and len(node.input) == 1 and len(node.output) == 1:
            dims[node.output[0]] = dims.get(node.input[0], ())

    def recurrent(shape: tuple[int, ...]) -> bool:
        return len(shape) == 2 and shape[0] >= 1 and shape[1] % shape[0] == 0 and shape[1] // shape[0] in _KINDS

    def zeros(name: str) -> bool:
        node = made_by.get(name)
        for _ in range(MAX_CHAIN):
            if node is None or node.op_type not in ("Cast", "Identity") or not len(node.input):
                break
            node = made_by.get(node.input[0])
        return node is not None and node.op_type == "ConstantOfShape"

    return any(node.op_type == "MatMul" and len(node.input) == 2 and recurrent(dims.get(node.input[1], ()))
               and zeros(node.input[0]) for node in order)


def _recurrences(g: _Graph) -> list[_Recurrence]:
    """The MatMul chains by a recurrent kernel that start from a zero state, with their weights."""
    by_kernel: dict[str, list[int]] = defaultdict(list)
    for k, node in enumerate(g.order):
        if _is_matmul(node) and node.input[0] in g.dynamic:
            w = g.static.get(node.input[1])
            if w is not None and w.dtype.kind == "f" and w.ndim == 2 and w.shape[0] >= 1 \
                    and w.shape[1] // w.shape[0] in _KINDS and w.shape[1] % w.shape[0] == 0:
                by_kernel[node.input[1]].append(k)
    found = []
    for name, positions in by_kernel.items():
        chains: list[list[int]] = []
        for k in positions:
            if _zero_state(g, g.order[k].input[0]):
                chains.append([k])
            elif chains:
                chains[-1].append(k)
        for steps in chains:
            found.append(_read_weights(g, name, steps))
    return sorted(found, key=lambda r: r.steps[0])


def _is_matmul(node: Any) -> bool:
    return node.op_type == "MatMul" and len(node.input) == 2 and len(node.output) == 1 and bool(node.output[0])


def _zero_state(g: _Graph, name: str) -> bool:
    """``name`` is zeros made by ``ConstantOfShape`` (through casts)."""
    k = g.producer.get(g.through_casts(name, forward=False)[-1])
    if k is None or g.order[k].op_type != "ConstantOfShape":
        return False
    try:
        value = attributes(g.order[k], g.opset).get("value")
    except ModelFileError:
        return False
    return value is None or (value.size == 1 and value.dtype.kind in "fiu" and not value.any())


def _read_weights(g: _Graph, recurrent: str, steps: list[int]) -> _Recurrence:
    U = g.static[recurrent]
    units, width = U.shape
    kind = _KINDS[width // units]
    label = (f"the unrolled {kind} whose recurrent kernel {recurrent!r} {U.shape} {len(steps)} MatMul node(s) read, "
             f"from {g.label(steps[0])} on")
    kernel_at = _kernel_matmul(g, steps[0], width)
    if kernel_at is None:
        raise bad(f"{label} takes no input through a MatMul by a constant kernel (features, {width}); barenet "
                  f"imports an unrolled {kind} that computes its gates from the sequence that way")
    K = g.static[g.order[kernel_at].input[1]]
    b_in = _bias_after(g, kernel_at, width)
    b_rec = _bias_after(g, steps[0], width)
    dtype = U.dtype
    zeros = np.zeros(width, dtype)
    b_in = zeros if b_in is None else b_in.astype(dtype)
    b_rec = zeros if b_rec is None else b_rec.astype(dtype)
    bias = np.stack([b_in, b_rec]) if kind == "GRU" else b_in + b_rec
    chain = [g.order[kernel_at].input[0]]
    while len(chain) < MAX_CHAIN:
        k = g.producer.get(chain[-1])
        if k is None or g.order[k].op_type not in _PLUMBING or g.order[k].input[0] not in g.dynamic:
            break
        chain.append(g.order[k].input[0])
    weights = {"kernel": K.astype(dtype), "recurrent_kernel": U, "bias": bias}
    return _Recurrence(kind, steps, kernel_at, weights, chain, label)


def _kernel_matmul(g: _Graph, first: int, width: int) -> int | None:
    """Position of the MatMul by the kernel: among the nodes the first step's gates are computed from besides
    the recurrent product, the last MatMul of a dynamic tensor by a constant ``(features, width)``."""
    own = {g.order[first].output[0]}
    for node in g.order[first + 1:]:
        if not any(i in own for i in node.input):
            continue
        others = [i for i in node.input if i in g.dynamic and i not in own]
        if others:
            candidates = [k for k in g.ancestors(others) if _is_kernel_matmul(g, k, width)]
            return max(candidates) if candidates else None
        own.update(o for o in node.output if o)
    return None


def _is_kernel_matmul(g: _Graph, k: int, width: int) -> bool:
    node = g.order[k]
    if not _is_matmul(node) or node.input[0] not in g.dynamic:
        return False
    w = g.static.get(node.input[1])
    return w is not None and w.dtype.kind == "f" and w.ndim == 2 and w.shape[0] >= 1 and w.shape[1] == width


def _bias_after(g: _Graph, k: int, width: int) -> np.ndarray | None:
    """The constant ``(width,)`` that an ``Add`` adds to the output of node ``k`` (through casts), if any."""
    for name in g.through_casts(g.order[k].output[0], forward=True):
        for user in g.consumers.get(name, []):
            node = g.order[user]
            if node.op_type == "Add" and len(node.input) == 2:
                other = g.static.get(node.input[1] if node.input[0] == name else node.input[0])
                if other is not None and other.dtype.kind == "f" and other.size == width \
                        and other.shape[-1] == width:
                    return other.reshape(width)
    return None


def _clusters(found: list[_Recurrence]) -> list[list[_Recurrence]]:
    """Recurrences grouped by shared input candidates (the two directions of a Bidirectional share theirs)."""
    groups: list[list[_Recurrence]] = []
    for r in found:
        joined = [c for c in groups if any(set(r.chain) & set(o.chain) for o in c)]
        merged = [r] + [o for c in joined for o in c]
        groups = [c for c in groups if c not in joined] + [sorted(merged, key=lambda o: o.steps[0])]
    return sorted(groups, key=lambda c: c[0].steps[0])


def _window(rs: list[_Recurrence]) -> int:
    """How many nodes after the last step the output of a recurrence may come (stacking, reversing, merging)."""
    span = max((r.steps[-1] - r.steps[0]) // max(len(r.steps) - 1, 1) for r in rs)
    return 4 * max(span, 64) + 4 * max(len(r.steps) for r in rs) + 64


def _graph_probes(g: _Graph) -> dict[str, np.ndarray]:
    """Random values for the graph inputs whose shapes the graph fixes (all but the batch)."""
    rng = np.random.default_rng(0)
    probes = {}
    for value in g.inputs:
        t = value.type.tensor_type
        dims = list(t.shape.dim)
        if t.elem_type not in TENSOR_TYPES or not dims or any(not d.HasField("dim_value") for d in dims[1:]):
            continue
        shape = (PROBE_BATCH, *(int(d.dim_value) for d in dims[1:]))
        if min(shape) < 1 or math.prod(shape) > g.budget:
            continue
        dtype = TENSOR_TYPES[t.elem_type][0]
        probes[value.name] = rng.standard_normal(shape) if dtype.kind == "f" else rng.integers(0, 2, shape)
    return probes


# --------------------------------------------------------------------- checking what they compute
def _match_cluster(g: _Graph, evaluator: _Evaluator, cluster: list[_Recurrence],
                   values: dict[str, np.ndarray]) -> list[_Match]:
    """The subgraphs computing the cluster's recurrences as barenet layers (one Bidirectional for a pair that is
    one, else one layer each), or a refusal saying why not."""
    if len(cluster) == 2:
        match = _match(g, evaluator, cluster, values)
        if match is not None:
            return [match]
    out = []
    for r in cluster:
        match = _match(g, evaluator, [r], values)
        if match is None:
            raise bad(_why_not(g, r, values))
        out.append(match)
    return out


def _match(g: _Graph, evaluator: _Evaluator, rs: list[_Recurrence], values: dict[str, np.ndarray]
           ) -> _Match | None:
    """The subgraph computing the recurrence (or the Bidirectional pair) ``rs`` from one of their common inputs,
    the furthest first (it takes the most of the exporter's plumbing along)."""
    chain = [x for x in rs[0].chain if all(x in r.chain for r in rs)]
    stop = max(r.steps[-1] for r in rs) + _window(rs)
    for x in reversed(chain):
        known = values if x in values else evaluator.forward(
            {x: np.random.default_rng(1).standard_normal((PROBE_BATCH, len(rs[0].steps), rs[0].features))},
            g.producer.get(x, -1) + 1, stop)
        match = _find_output(g, rs, x, known, stop)
        if match is not None:
            return match
    return None


def _references(rs: list[_Recurrence], x: np.ndarray) -> dict[tuple[bool, str | None], np.ndarray]:
    """What barenet's layer computes from ``x`` for each ``(return_sequences, merge)``, in float64: one forward
    layer, or the forward layer ``rs[0]`` and the backward one ``rs[1]`` of a Bidirectional."""
    first = rs[0]
    shape = (len(first.steps), first.features)
    if x.ndim != 3 or x.shape[1:] != shape:
        return {}
    if len(rs) == 1:
        seq = first.layer("float64", True).forward(x)
        return {(True, None): seq, (False, None): seq[:, -1]}
    other = rs[1]
    if (other.kind, other.units, len(other.steps), other.features) != (first.kind, first.units, *shape):
        return {}
    fwd = first.layer("float64", True).forward(x)
    bwd = other.layer("float64", True).forward(x[:, ::-1])
    out = {}
    for sequences, (f, b) in ((True, (fwd, bwd[:, ::-1])), (False, (fwd[:, -1], bwd[:, -1]))):
        out[(sequences, "concat")] = np.concatenate([f, b], axis=-1)
        out[(sequences, "sum")] = f + b
        out[(sequences, "mul")] = f * b
        out[(sequences, "ave")] = (f + b) / 2
    return out


def _close(got: np.ndarray, want: np.ndarray) -> bool:
    return got.shape == want.shape and bool(np.all(np.abs(got - want) <= TOLERANCE * max(1.0, np.abs(want).max())))


def _find_output(g: _Graph, rs: list[_Recurrence], x: str, values: dict[str, np.ndarray], stop: int
                 ) -> _Match | None:
    """The last tensor (within ``stop``) after the last step that equals barenet's output and closes a subgraph
    from ``x`` (so that identities after the layer, and a merge's division by 2, go with it); for two
    recurrences, either may be the forward one."""
    if x not in values:
        return None
    needed = {k for r in rs for k in (*r.steps, r.kernel_at)}
    for order in ([rs[0], rs[1]], [rs[1], rs[0]]) if len(rs) == 2 else ([rs[0]],):
        refs = _references(order, values[x])
        for node in reversed(g.order[max(r.steps[-1] for r in rs) + 1:stop] if refs else []):
            for y in node.output:
                hit = next((key for key, want in refs.items() if y in values and _close(values[y], want)), None)
                region = None if hit is None else _region(g, x, y, needed)
                if region is not None and needed <= region:
                    return _Match(order, x, y, region, *hit)
    return None


def _region(g: _Graph, x: str, y: str, needed: set[int]) -> set[int] | None:
    """The nodes to replace: those that compute ``y`` from ``x`` and constants, less those whose outputs other
    nodes read too (casts of the input that another layer reads, say), which stay; ``None`` when ``y`` depends on
    another dynamic tensor than ``x``, or when a node that stays is one of the ``needed`` (a step's state read
    outside the recurrence)."""
    inside = g.descendants(x)
    region: set[int] = set()
    stack = [g.producer[y]]
    while stack:
        k = stack.pop()
        if k in region:
            continue
        region.add(k)
        for name in g.order[k].input:
            if not name or name == x or name not in g.dynamic:
                continue
            if name not in inside or name not in g.producer:
                return None
            stack.append(g.producer[name])
    read_outside = [name for k in region for name in g.order[k].output if name and name != y and (
        name in g.outputs or any(u not in region for u in g.consumers.get(name, [])))]
    stays = g.ancestors(read_outside) & region
    if stays & (needed | {g.producer[y]}):
        return None
    return region - stays


def _why_not(g: _Graph, r: _Recurrence, values: dict[str, np.ndarray]) -> str:
    """Why a recurrence is refused, as precisely as the graph tells."""
    kind = r.kind
    ops = sorted({node.op_type for node in g.order[r.steps[0]:r.steps[-1] + 1]} - _STEP_OPS)
    if ops:
        return (f"{r.label} computes {', '.join(ops)} in its steps; barenet's {kind} computes its gates with "
                "sigmoid and its candidate with tanh (Keras's activation='tanh', recurrent_activation='sigmoid')")
    x = values.get(r.chain[-1])
    if x is not None and _references([r], x):
        forward = r.layer("float64", False).forward(x)
        seen = next((name for name, v in values.items() if _close(v, forward)), None)
        if seen is not None:
            return (f"{r.label} computes barenet's {kind} (its last output is {seen!r}), but operators outside it "
                    "also read its steps or its states (Keras's return_state=True, say); barenet's layer gives "
                    "its output alone")
        backward = r.layer("float64", False).forward(x[:, ::-1])
        if any(_close(v, backward) for v in values.values()):
            return (f"{r.label} reads the sequence backwards (go_backwards=True) on its own; barenet's {kind} "
                    "reads it forwards (it reads backwards only as the second half of a Bidirectional)")
    return (f"{r.label} does not compute what barenet's {kind} (reset_after=True for GRU) computes with the "
            "weights the graph holds: no tensor after its last step equals that layer's output (or a "
            "Bidirectional merge of it) on probe inputs")


# --------------------------------------------------------------------- the replacement
def _nodes(m: _Match, taken: set[str]) -> list[Any]:
    """The nodes of one ONNX recurrent operator computing ``m.y`` from ``m.x``, as barenet's exporter writes them;
    the tensors they add are named after ``m.y``, apart from every name in ``taken``."""
    from onnx import helper, numpy_helper

    first = m.recurrences[0]
    dtype = first.weights["kernel"].dtype
    prefix = f"{m.y}/{first.kind.lower()}"
    while any(name.startswith(prefix + "/") for name in taken):
        prefix += "_"
    nodes: list[Any] = []

    def const(value: np.ndarray, name: str) -> str:
        out = f"{prefix}/{name}"
        nodes.append(helper.make_node("Constant", [], [out], name=out, value=numpy_helper.from_array(value, out)))
        return out

    try:
        weights = [_onnx_weights(r.layer(dtype, m.return_sequences)) for r in m.recurrences]
    except BarenetError as exc:
        raise bad(f"{first.label} has weights barenet's {first.kind} cannot hold: {exc}") from None
    W, R, B = (np.stack([w[k] for w in weights]).astype(dtype) for k in range(3))
    inputs = [f"{prefix}/x_time_major", const(W, "W"), const(R, "R"), const(B, "B")]
    nodes.append(helper.make_node("Transpose", [m.x], [inputs[0]], name=inputs[0], perm=[1, 0, 2]))
    attrs: dict[str, Any] = {"hidden_size": first.units,
                             "direction": "bidirectional" if len(m.recurrences) == 2 else "forward"}
    if first.kind == "GRU":
        attrs["linear_before_reset"] = 1
    outputs = [f"{prefix}/Y", ""] if m.return_sequences else ["", f"{prefix}/Y_h"]
    nodes.append(helper.make_node(first.kind, inputs, outputs, name=f"{prefix}/{first.kind}", **attrs))
    directions = []
    for d in range(len(m.recurrences)):
        index = const(np.array(d, dtype=np.int64), f"index{d}")
        out = f"{prefix}/direction{d}"
        if m.return_sequences:  # Y : (time, directions, batch, units)
            nodes.append(helper.make_node("Gather", [outputs[0], index], [out + "_tm"], name=out + "_tm", axis=1))
            nodes.append(helper.make_node("Transpose", [out + "_tm"], [out], name=out, perm=[1, 0, 2]))
        else:  # Y_h : (directions, batch, units)
            nodes.append(helper.make_node("Gather", [outputs[1], index], [out], name=out, axis=0))
        directions.append(out)
    if len(directions) == 1:
        nodes[-1].output[0] = m.y
    elif m.merge == "concat":
        nodes.append(helper.make_node("Concat", directions, [m.y], name=m.y, axis=-1))
    elif m.merge == "ave":
        total = f"{prefix}/sum"
        nodes.append(helper.make_node("Add", directions, [total], name=total))
        nodes.append(helper.make_node("Mul", [total, const(np.array(0.5, dtype), "half")], [m.y], name=m.y))
    else:
        nodes.append(helper.make_node("Add" if m.merge == "sum" else "Mul", directions, [m.y], name=m.y))
    return nodes
