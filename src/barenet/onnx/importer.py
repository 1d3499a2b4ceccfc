"""Import an ONNX graph as a barenet model: a :class:`~barenet.Sequential` when the graph is a chain, else a
functional :class:`~barenet.Model`.

A chain has one input, one output, and a data path from one to the other in which every tensor feeds the next
operator only (shape computations may read it too); it imports as a ``Sequential``, as it always has. Any
other graph (a tensor read by several operators, branches joined again, several inputs or outputs) imports as
a ``Model`` whose layer calls follow the graph. Along the way

* ``Gemm`` and ``MatMul`` (+ ``Add`` of a constant bias) become :class:`~barenet.layers.Dense`;
* ``Conv`` becomes :class:`~barenet.layers.Conv2D` with ``data_format="channels_first"`` (ONNX images are
  NCHW), ``MaxPool``/``AveragePool``/``GlobalAveragePool`` the matching pooling layers in the same layout
  (and ``ReduceMean`` over height and width a global average pool); where the graph transposed an NHWC tensor
  to NCHW first (barenet's own exporter does), the layers take ``"channels_last"`` and no transpose is kept;
* a grouped ``Conv`` becomes ``Conv2D(groups=...)``, one with a group per input channel
  :class:`~barenet.layers.DepthwiseConv2D`; a ``Conv`` on ``(N, C, L)`` sequences becomes
  :class:`~barenet.layers.Conv1D`; padding, ``pads`` of any amounts or ``auto_pad``, becomes the layer's
  ``padding``, and a zero ``Pad`` right before a ``Conv`` is added to the convolution's own padding;
* ``BatchNormalization`` becomes :class:`~barenet.layers.BatchNormalization` on features ``(batch, C)`` and
  on images held as NHWC; on NCHW images (or NCL sequences) right after a ``Conv`` it is folded into the
  convolution (as exporters do in eval mode);
* an activation right after a ``Dense`` or a convolution becomes that layer's ``activation`` (so a final softmax
  fuses with cross-entropy when the model is fine-tuned), otherwise an activation layer;
* ``Add``, ``Sub``, ``Mul``, ``Max``, ``Sum``, ``Mean`` and ``Concat`` of computed tensors (of one shape, no
  broadcasting) become the merge layers :class:`~barenet.layers.Add`, ``Subtract``, ``Multiply``,
  ``Maximum``, ``Add``, ``Average`` and ``Concatenate``;
* ``Sub``, ``Mul`` and ``Add`` of constants holding one value per feature or channel, in that order and
  starting with the ``Sub`` (batch normalization as Keras writes it at inference), become one
  :class:`~barenet.layers.BatchNormalization`;
* ``RNN``/``LSTM``/``GRU`` become :class:`~barenet.layers.SimpleRNN`/``LSTM``/``GRU``, gate blocks reordered
  (ONNX LSTM ``i, o, f, c`` -> barenet ``i, f, c, o``; GRU ``z, r, h`` is barenet's order; the two ONNX biases
  are summed, or kept apart for GRU with ``linear_before_reset=1``, barenet's ``reset_after=True``);
  taking the last time step (``Gather``/``Slice`` at -1, or the ``Y_h`` output) sets ``return_sequences=False``;
  a ``direction="bidirectional"`` node becomes :class:`~barenet.layers.Bidirectional` around that layer, its
  ``merge_mode`` read from the operators that join the two directions: ``Concat`` over the feature axis (or a
  ``Transpose`` + ``Reshape`` that folds the direction axis into the features, as PyTorch writes it) is
  ``"concat"``, ``Add`` is ``"sum"`` (``"ave"`` when a ``Mul`` by 0.5 follows), ``Mul`` is ``"mul"``;
* ``Gather`` of a constant table by an integer input becomes :class:`~barenet.layers.Embedding`;
* ``Transpose``, ``Squeeze``, ``Unsqueeze``, ``Reshape``, ``Flatten`` on the data path only relabel axes
  when they move size-1 axes or undo one another (the time-major dance around recurrent operators), and
  become :class:`~barenet.layers.Flatten`/``Reshape`` when they reshape each sample;
* ``Identity``, a ``Cast`` to the type the data already has, and inference-mode ``Dropout`` pass through
  (``Dropout`` keeps its rate for fine-tuning).

Everything that does not touch the data path is folded to constants (:mod:`._fold`). Anything else is
refused with a :class:`~barenet.errors.ModelFileError` naming the operator and the node.

Bookkeeping: each layer call is a :class:`_Call`; each barenet tensor (a graph input or a call's output) is a
:class:`_Tensor`, which counts the operators that read it, so that an operator is folded into the layer before
it (an activation, a bias, a batch norm) only when nothing else reads that layer's output. An ONNX value on
the data path is a :class:`Data`: a view of one barenet tensor, its per-sample shape plus, for each ONNX axis,
which barenet axis it is (0 = batch) or ``None`` for an ONNX axis of size 1 that barenet does not have. A
transpose permutes that list; nothing is computed until a layer needs it. The calls become layers at the end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .. import functional as F
from .. import layers as L
from ..errors import BarenetError, ModelFileError
from ..layers.conv import Pads, resolve_padding
from ..models import Sequential
from ..models.graph import Input, Model, call_layer
from ._checks import (
    MAX_FILE_BYTES,
    TENSOR_TYPES,
    bad,
    check_model,
    element_budget,
    node_label,
    opset_version,
    read_external_data,
    read_model,
    tensor_array,
)
from ._fold import BATCH, FOLDABLE, Filled, Folder, attributes, int_list, resolve_shape, slice_arguments, slice_index
from ._patterns import ELEMENTWISE, fuse
from ._transformer import TRANSFORMER_ARITY, TRANSFORMER_OPS, TransformerImport
from .keras_recurrent import fuse_recurrences

#: Operators that map to layers or move data-path axes (besides the foldable ones).
LAYER_OPS = frozenset({
    "Gemm", "MatMul", "Add", "Relu", "Sigmoid", "Tanh", "Softmax", "LeakyRelu", "Elu", "Gelu", "Conv",
    "BatchNormalization", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape", "Gather",
    "RNN", "LSTM", "GRU", "Identity", "Dropout", "Transpose", "Squeeze", "Unsqueeze", "Slice", "ReduceMean",
    "Concat", "Mul", "Sub", "Div", "Max", "Sum", "Mean", "Cast",
    "Pad",
})
#: Operators of the activations, normalization, pooling, resizing and padding layers added with LayerNormalization.
LAYER_OPS = LAYER_OPS | {"Swish", "Mish", "HardSwish", "HardSigmoid", "Softplus", "Clip", "LayerNormalization",
                         "GlobalMaxPool", "ReduceMax", "Resize", "Pad"}
#: Operators read only inside the subgraphs :mod:`._patterns` recognizes as one operator (refused anywhere else).
PATTERN_OPS = ELEMENTWISE | {"ReduceMean", "Pow", "Sqrt"}
SUPPORTED_OPS = LAYER_OPS | FOLDABLE | PATTERN_OPS | TRANSFORMER_OPS
#: (fewest, most) inputs of each operator; the fewest must all be given.
ARITY = {
    "Constant": (0, 0), "Concat": (1, 1 << 16), "Gather": (2, 2), "Reshape": (2, 2), "Expand": (2, 2),
    "Add": (2, 2), "Sub": (2, 2), "Mul": (2, 2), "Div": (2, 2), "MatMul": (2, 2), "Gemm": (2, 3), "Conv": (2, 3),
    "Squeeze": (1, 2), "Unsqueeze": (1, 2), "ReduceMean": (1, 2), "Slice": (1, 5), "Dropout": (1, 3),
    "BatchNormalization": (5, 5), "RNN": (3, 6), "GRU": (3, 6), "LSTM": (3, 8),
    "Clip": (1, 3), "LayerNormalization": (1, 3), "ReduceMax": (1, 2), "Resize": (1, 4), "Pad": (1, 4),
    "Pow": (2, 2), "Less": (2, 2), "Greater": (2, 2), "Where": (3, 3), "Max": (1, 1 << 16), "Min": (1, 1 << 16),
    "Sum": (1, 1 << 16), "Mean": (1, 1 << 16), **TRANSFORMER_ARITY,
}
#: Operators that may read several data-path tensors (and join them with a merge layer).
JOINS = frozenset({"Add", "Sub", "Mul", "Div", "Max", "Sum", "Mean", "Concat"})
#: Largest per-sample element count of any tensor on the data path.
MAX_SAMPLE_ELEMENTS = 1 << 24

_ACTIVATIONS = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh"}
_RNN_DEFAULTS = {"RNN": ["tanh"], "LSTM": ["sigmoid", "tanh", "tanh"], "GRU": ["sigmoid", "tanh"]}
#: The label of a bidirectional recurrent node's direction axis (size 2) in :attr:`Data.axes`.
DIR = -1
#: Operators that may move a bidirectional node's output (or one direction of it) before the merge.
_BIDIRECTIONAL_MOVES = frozenset({"Transpose", "Identity", "Squeeze", "Unsqueeze", "Reshape", "Flatten", "Gather"})
#: The variance given to a batch normalization read from ``Sub``/``Mul``/``Add`` (the graph holds only the product
#: ``gamma / sqrt(variance + epsilon)``): with the epsilon below, ``variance + epsilon`` is 1 and ``gamma`` that
#: product, exactly in float32 and float64.
_AFFINE_EPSILON = 1e-3
_AFFINE_VARIANCE = 1 - _AFFINE_EPSILON


@dataclass(eq=False)
class _Call:
    """One layer call of the imported network: ``layer`` applied to ``inputs`` (a list when it joins several);
    ``weights`` are set once the model is built."""

    layer: L.Layer
    inputs: list[_Tensor]
    single: bool
    weights: dict[str, np.ndarray]
    output: _Tensor | None = None
    options: dict[str, Any] | None = None  # the call's keyword arguments (MultiHeadAttention's causal mask)


@dataclass(eq=False)
class _Tensor:
    """A barenet tensor: a graph input (``call`` None) or the output of one layer call.

    ``pending`` counts the reads of the ONNX values that are views of it still to come (a graph output counts as
    one read); ``readers`` the operators that have read its values so far, those that only moved its axes (or
    were folded into its layer) excepted. An operator may change the layer that made a tensor (fold an
    activation into it, say) only when it is the one reader and none are pending.
    """

    call: _Call | None
    integer: bool = False
    pending: int = 0
    readers: int = 0


@dataclass(frozen=True)
class Data:
    """A tensor on the data path: barenet per-sample ``shape`` and, per ONNX axis, the barenet axis; ``tensor``
    is the barenet tensor it is a view of.

    Between a bidirectional recurrent node and the operator that merges its directions, ``shape`` is one
    direction's output; the node's output has an axis labelled :data:`DIR`, and ``half`` is the direction
    (0 forward, 1 backward) of a tensor taken from it.
    """

    shape: tuple[int, ...]
    axes: tuple[int | None, ...]
    serial: int
    half: int | None = None
    tensor: _Tensor | None = field(default=None, compare=False)

    @property
    def onnx_shape(self) -> tuple[Any, ...]:
        return tuple(BATCH if a == 0 else 1 if a is None else 2 if a == DIR else self.shape[a - 1]
                     for a in self.axes)

    @property
    def plain(self) -> bool:
        """ONNX and barenet agree on the axes (no relabelling pending)."""
        return self.axes == tuple(range(len(self.shape) + 1))


def import_onnx(path: str | os.PathLike, *, max_bytes: int = MAX_FILE_BYTES, dtype: Any = None) -> Sequential:
    """Build a barenet model from the ONNX file ``path``: :func:`barenet.onnx.import_onnx` once ``onnx`` is known
    to be installed (see there for the arguments); the module docstring says what is supported."""
    if dtype is not None and np.dtype(dtype) not in (np.float32, np.float64):
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    model, n_bytes = read_model(path, max_bytes=max_bytes)
    n_bytes += read_external_data(model, path, n_bytes, max_bytes=max_bytes)
    order = check_model(model, n_bytes, SUPPORTED_OPS)
    order = fuse_recurrences(model.graph, order, opset_version(model), element_budget(n_bytes))
    order = fuse(model.graph, order, opset_version(model), element_budget(n_bytes))
    try:
        return _Translator(model, n_bytes, None if dtype is None else np.dtype(dtype)).run(order)
    except ModelFileError:
        raise
    except BarenetError as exc:  # a layer refused a value read from the file
        raise bad(f"the ONNX graph gives a layer an unusable setting: {exc}") from None


class _Translator(TransformerImport):
    """Walks the nodes in topological order, folding constants and recording layer calls."""

    def __init__(self, model: Any, n_bytes: int, dtype: np.dtype | None = None) -> None:
        self.model = model
        self.graph = model.graph
        self.opset = opset_version(model)
        self.budget = element_budget(n_bytes)
        self.folder = Folder(self.budget, self.opset)
        self.values: dict[str, Any] = {}
        self.calls: list[_Call] = []
        self.call_of: dict[int, _Call] = {}  # id(layer) -> its call
        self.current: _Tensor | None = None  # the tensor the node at hand reads (its first data-path input)
        self.serial = 0
        self.uses: dict[str, int] = {}
        self.dtype_given = dtype is not None
        self.dtype = dtype or np.dtype("float32")
        self.onnx_dtype: np.dtype | None = None  # the float type of the graph's data path
        self.pending: _Unmerged | None = None  # a bidirectional node whose directions are not merged yet
        self.zero_pads: dict[int, tuple[Data, list[int]]] = {}  # a Pad's output -> (its input, ONNX pads)
        self.affine: dict[int, str] = {}  # id of a batch norm read from Sub/Mul/Add -> the last of them read
        self.fixed_batch: int | None = None  # the batch size the graph inputs fix, if they all fix one

    # ----------------------------------------------------------------- driver
    def run(self, order: list[Any]) -> Sequential:
        graph = self.graph
        for t in graph.initializer:
            self.values[t.name] = tensor_array(t)
        inputs = [i for i in graph.input if i.name not in self.values]
        if not inputs or not len(graph.output):
            raise bad(f"the graph has {len(inputs)} input(s) and {len(graph.output)} output(s); barenet imports "
                      "graphs with at least one of each")
        order = self._prepare_transformer(order)
        self.readers: dict[str, list[str]] = {}  # a tensor -> the operators that read it
        for node in order:
            for name in node.input:
                self.uses[name] = self.uses.get(name, 0) + 1
                self.readers.setdefault(name, []).append(node.op_type)
        for out in graph.output:
            self.uses[out.name] = self.uses.get(out.name, 0) + 1
        signature = self._signatures(inputs)
        batch = {d.dim_value if d.HasField("dim_value") else None for d in
                 (value.type.tensor_type.shape.dim[0] for value in inputs)}
        self.fixed_batch = batch.pop() if len(batch) == 1 and None not in batch else None
        starts = []
        for value, (sample_shape, in_dtype) in zip(inputs, signature, strict=True):
            tensor = _Tensor(None, integer=in_dtype.kind in "iu")
            data = self._data(sample_shape, tuple(range(len(sample_shape) + 1)), tensor)
            tensor.pending = self.uses.get(value.name, 0)
            self.values[value.name] = data
            starts.append((value.name, tensor, sample_shape))
        for node in order:
            self._node(node)
        for value in graph.output:
            out = self.values.get(value.name)
            if isinstance(out, Data) and out.serial in self.zero_pads:
                raise bad("the graph ends in a Pad; barenet imports Pad only as the padding of the Conv after it")
        if self.pending is not None:
            raise bad(f"the two directions of {self.pending.label} are never merged into one tensor (Concat, Add, "
                      "Mul); barenet's Bidirectional gives one output")
        ends = [self._output(value.name) for value in graph.output]
        self._prune(ends)
        if not self.calls:
            raise bad("the graph computes nothing barenet has a layer for (it is an identity)")
        reached = {id(t) for call in self.calls for t in call.inputs}
        unused = [name for name, tensor, _ in starts if id(tensor) not in reached]
        if unused:
            raise bad(f"graph input(s) {unused} reach no graph output; a barenet model uses each of its inputs")
        return self._build(starts, ends)

    def _signatures(self, inputs: list[Any]) -> list[tuple[tuple[int, ...], np.dtype]]:
        """Each input's per-sample shape and dtype; float inputs set the model's dtype (they must agree)."""
        signature = [self._input_signature(value) for value in inputs]
        floats = {dt for _, dt in signature if dt.kind == "f"}
        if len(floats) > 1:
            raise bad(f"the graph inputs mix {sorted(dt.name for dt in floats)}; a barenet model computes in one dtype")
        if floats:
            self.onnx_dtype = floats.pop()
            if not self.dtype_given:
                self.dtype = self.onnx_dtype
        return signature

    def _output(self, name: str) -> _Tensor:
        """The barenet tensor that graph output ``name`` is, as (batch, ...) in ONNX's layout."""
        out = self.values[name]
        if not isinstance(out, Data):
            raise bad(f"graph output {name!r} is a constant, not computed from the graph's input")
        if not out.plain:
            self.current = out.tensor
            out = self._to_batch_major(out, out.onnx_shape, None)
        if out.tensor.call is None:
            raise bad(f"graph output {name!r} is a graph input, unchanged; barenet models compute every output")
        return out.tensor

    def _prune(self, ends: list[_Tensor]) -> None:
        """Drop the calls no graph output depends on."""
        live = {id(t) for t in ends}
        kept = []
        for call in reversed(self.calls):
            if id(call.output) in live:
                kept.append(call)
                live.update(id(t) for t in call.inputs)
        self.calls = kept[::-1]

    def _input_signature(self, value: Any) -> tuple[tuple[int, ...], np.dtype]:
        tensor_type = value.type.tensor_type
        if not value.type.HasField("tensor_type") or tensor_type.elem_type not in TENSOR_TYPES:
            raise bad(f"graph input {value.name!r} is not a tensor of a numeric type barenet reads")
        dtype = TENSOR_TYPES[tensor_type.elem_type][0].newbyteorder("=")
        if dtype.kind == "f" and dtype not in (np.float32, np.float64):
            raise bad(f"graph input {value.name!r} is {dtype}; barenet models are float32 or float64")
        dims = tensor_type.shape.dim
        if len(dims) < 2:
            raise bad(f"graph input {value.name!r} has {len(dims)} axes; expected (batch, ...)")
        shape = []
        for k, d in enumerate(dims[1:], start=1):
            if not d.HasField("dim_value") or d.dim_value < 1:
                raise bad(f"graph input {value.name!r} has a variable or empty axis {k} "
                          f"({d.dim_param or d.dim_value!r}); barenet needs every axis "
                          "but the batch to have a fixed size")
            shape.append(int(d.dim_value))
        return tuple(shape), dtype

    def _build(self, starts: list[tuple[str, _Tensor, tuple[int, ...]]], ends: list[_Tensor]) -> Sequential:
        """The model: a Sequential when the calls form one chain from the one input to the one output, else a
        functional Model; then the weights read from the file."""
        try:
            if self._is_chain(starts, ends):
                model = Sequential([call.layer for call in self.calls], seed=0, dtype=self.dtype)
                model.build(starts[0][2])
            else:
                model = self._graph_model(starts, ends)
        except BarenetError as exc:
            raise bad(f"the imported layers do not fit together: {exc}") from None
        for call in self.calls:
            layer = call.layer
            for name, value in call.weights.items():
                target = layer.params.get(name, layer.buffers.get(name))
                if target is None or target.shape != value.shape:
                    raise bad(f"{layer.describe()} {name} has shape {None if target is None else target.shape}, "
                              f"the ONNX graph gives {value.shape}")
                target[...] = value
        for call in self.calls:
            layer = call.layer
            for name, value in {**layer.params, **layer.buffers}.items():
                if not np.all(np.isfinite(value)):
                    raise bad(f"{layer.describe()} {name} holds NaN or infinite values in the ONNX file")
        producer = self.model.producer_name[:100]
        model.metadata["imported_from"] = {"format": "onnx", "producer": producer,
                                           "producer_version": self.model.producer_version[:100],
                                           "opset": self.opset}
        return model

    def _is_chain(self, starts: list[tuple[str, _Tensor, tuple[int, ...]]], ends: list[_Tensor]) -> bool:
        if len(starts) != 1 or len(ends) != 1:
            return False
        tensor = starts[0][1]
        for call in self.calls:
            if not call.single or call.inputs[0] is not tensor:
                return False
            tensor = call.output
        return tensor is ends[0]

    def _graph_model(self, starts: list[tuple[str, _Tensor, tuple[int, ...]]], ends: list[_Tensor]) -> Model:
        """Replay the calls on symbolic tensors (so each layer's shapes are those it was imported with)."""
        symbolic: dict[int, Any] = {}
        ins = []
        for name, tensor, shape in starts:
            # An integer input stays integer when only Embeddings read it; others read it as floats, as in Sequential.
            ids = tensor.integer and all(isinstance(call.layer, L.Embedding) for call in self.calls
                                         if any(t is tensor for t in call.inputs))
            symbolic[id(tensor)] = Input(shape, name=name, dtype="int64" if ids else None)
            ins.append(symbolic[id(tensor)])
        for call in self.calls:
            args = [symbolic[id(t)] for t in call.inputs]
            symbolic[id(call.output)] = call_layer(call.layer, args[0] if call.single else args, call.options)
        outs = [symbolic[id(t)] for t in ends]
        return Model(ins[0] if len(ins) == 1 else ins, outs[0] if len(outs) == 1 else outs, seed=0,
                     dtype=self.dtype)

    def _node(self, node: Any) -> None:
        fewest, most = ARITY.get(node.op_type, (1, 1))
        if node.op_type == "Slice" and self.opset >= 10:
            fewest = 3
        if not fewest <= len(node.input) <= most or not all(node.input[:fewest]) or not len(node.output):
            raise bad(f"{node_label(node)} has {len(node.input)} input(s) and {len(node.output)} output(s); "
                      f"an ONNX {node.op_type} takes {fewest} to {most} inputs and gives at least one output")
        inputs = [self.values[name] if name else None for name in node.input]
        attrs = attributes(node, self.opset)
        on_path = [x for x in inputs if isinstance(x, Data)]
        for x in on_path:
            x.tensor.pending -= 1
        read = list({id(x.tensor): x.tensor for x in on_path}.values())
        if self._in_attention(node, inputs):
            outs = self._attention_node(node, inputs, attrs)
        elif node.op_type == "Shape" and on_path:
            outs = self.folder.fold(node, [_ShapeView(on_path[0].onnx_shape)], attrs)
        elif on_path:
            if node.op_type not in LAYER_OPS:
                raise bad(f"{node_label(node)} computes on the data path, where barenet has no {node.op_type!r} "
                          "layer")
            self.current = on_path[0].tensor
            for tensor in read:
                self._consume(next(x for x in on_path if x.tensor is tensor), node)
            if self.pending is not None and any(x.tensor is self.pending.tensor for x in on_path):
                outs = self._bidirectional_step(node, inputs, attrs, on_path)
            else:
                if len(on_path) > 1 and node.op_type not in JOINS:
                    raise bad(f"{node_label(node)} reads {len(on_path)} data-path tensors; barenet joins computed "
                              f"tensors only with {', '.join(sorted(JOINS - {'Div'}))}")
                where = {"Gather": (0, 1), "Add": (0, 1), "Mul": (0, 1)}.get(node.op_type, (0,))
                if node.op_type in JOINS - {"Sub", "Div"}:
                    where = tuple(range(len(inputs)))
                if not any(isinstance(inputs[k], Data) for k in where):
                    raise bad(f"{node_label(node)} takes the data path as input "
                              f"{next(k for k, v in enumerate(inputs) if v is on_path[0])}, where "
                              f"an ONNX {node.op_type} expects a constant")
                outs = getattr(self, "_" + node.op_type)(node, inputs, attrs)
            outs = outs if isinstance(outs, list) else [outs]
            for tensor in read:  # an output that is a view of what the node read: the node only moved it
                if any(isinstance(o, Data) and o.tensor is tensor for o in outs):
                    tensor.readers -= 1
        elif node.op_type in FOLDABLE:
            outs = self.folder.fold(node, inputs, attrs)
        else:
            raise bad(f"{node_label(node)} has no input from the data path and is not a constant expression "
                      "barenet folds")
        for name, value in zip(node.output, outs, strict=False):
            if name:
                self.values[name] = value
                if isinstance(value, Data):
                    value.tensor.pending += self.uses.get(name, 0)

    def _consume(self, x: Data, node: Any) -> None:
        """``node`` reads the values of ``x``'s tensor (called once per tensor it reads)."""
        x.tensor.readers += 1
        if x.serial in self.zero_pads and node.op_type != "Conv":
            raise bad(f"{node_label(node)} reads the output of a Pad; barenet imports Pad only as the padding of "
                      "the Conv right after it")

    def _data(self, shape: tuple[int, ...], axes: tuple[int | None, ...], tensor: _Tensor | None = None) -> Data:
        """A data-path value of per-sample ``shape`` and ``axes``, a view of ``tensor`` (by default the one the
        node at hand reads)."""
        n = 1
        for d in shape:
            n *= int(d)
        if n > MAX_SAMPLE_ELEMENTS or n < 1:
            raise bad(f"a tensor of per-sample shape {shape} is outside barenet's limits "
                      f"(1 to {MAX_SAMPLE_ELEMENTS} values per sample)")
        self.serial += 1
        return Data(tuple(int(d) for d in shape), axes, self.serial, tensor=tensor or self.current)

    def _call(self, layer: L.Layer, xs: list[Data], single: bool, arrays: dict[str, Any]) -> _Tensor:
        """Record ``layer`` called on the tensors of ``xs``; return its output tensor."""
        call = _Call(layer, [x.tensor for x in xs], single, {k: np.asarray(v) for k, v in arrays.items()})
        call.output = _Tensor(call)
        self.calls.append(call)
        self.call_of[id(layer)] = call
        return call.output

    def _add(self, layer: L.Layer, x: Data, out_axes: tuple[int | None, ...] | None = None,
             **arrays: np.ndarray) -> Data:
        """Call ``layer`` (its weights set after build) on ``x``; return its output."""
        try:
            shape = layer.compute_output_shape(x.shape)
        except BarenetError as exc:
            raise bad(f"cannot import {layer.describe()}: {exc}") from None
        tensor = self._call(layer, [x], True, arrays)
        return self._data(shape, out_axes if out_axes is not None else tuple(range(len(shape) + 1)), tensor)

    def _join(self, node: Any, xs: list[Data], layer: L.Layer) -> Data:
        """Call the merge ``layer`` on the data-path tensors ``xs`` (one layout, shapes the layer accepts)."""
        first = xs[0]
        shapes = [list(x.onnx_shape) for x in xs]
        concat = isinstance(layer, L.Concatenate)
        try:
            shape = layer.compute_output_shape([x.shape for x in xs])
        except BarenetError:
            shape = None
        one_layout = all(x.axes == first.axes and DIR not in x.axes for x in xs)
        if shape is None or not one_layout and (concat or any(s != shapes[0] for s in shapes)):
            need = "them equal but along the joined axis" if concat else "one shape"
            raise bad(f"{node_label(node)} joins data-path tensors of ONNX shapes {shapes}; barenet's "
                      f"{type(layer).__name__} needs {need} (no broadcasting)")
        if not one_layout:
            raise bad(f"{node_label(node)} joins data-path tensors held in different layouts (ONNX shapes {shapes}); "
                      f"barenet's {type(layer).__name__} takes tensors of one layout")
        return self._data(shape, first.axes, self._call(layer, xs, False, {}))

    def _const(self, x: Any, what: str, node: Any, ndim: tuple[int, ...] | None = None) -> np.ndarray:
        if not isinstance(x, np.ndarray) or x.dtype == object:
            raise bad(f"{what} of {node_label(node)} must be a constant (an initializer or a folded value)")
        if ndim is not None and x.ndim not in ndim:
            raise bad(f"{what} of {node_label(node)} has shape {x.shape}; expected {' or '.join(map(str, ndim))} axes")
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            raise bad(f"{what} of {node_label(node)} holds NaN or infinite values")
        return x

    def _weights(self, x: Any, what: str, node: Any, ndim: tuple[int, ...] | None) -> np.ndarray:
        w = self._const(x, what, node, ndim)
        if w.dtype.kind != "f":
            raise bad(f"{what} of {node_label(node)} has dtype {w.dtype}; expected floats")
        return w.astype(self.dtype)

    def _require_plain(self, x: Data, node: Any, what: str) -> None:
        if not x.plain:
            raise bad(f"{node_label(node)} needs its input as {what}, but the graph transposed the data path "
                      f"into a layout barenet's layers do not take (ONNX shape {list(x.onnx_shape)})")

    def _last_open(self, kinds: tuple[type, ...], x: Data) -> L.Layer | None:
        """The layer that computed ``x`` if it is one of ``kinds`` and the operator at hand is the only reader of
        its output (so that operator can be folded into it)."""
        tensor = x.tensor
        if tensor.call is not None and isinstance(tensor.call.layer, kinds) and tensor.pending == 0 \
                and tensor.readers == 1:
            return tensor.call.layer
        return None

    def _arrays(self, layer: L.Layer) -> dict[str, np.ndarray]:
        """The weights the file gives ``layer``."""
        return self.call_of[id(layer)].weights


    # ----------------------------------------------------------------- dense
    def _Gemm(self, node, inputs, attrs):
        x = inputs[0]
        if not isinstance(x, Data) or attrs.get("transA", 0):
            raise bad(f"{node_label(node)} must take the data path as its first, untransposed input")
        self._require_plain(x, node, "(batch, features)")
        if len(x.shape) != 1:
            raise bad(f"{node_label(node)} takes 2-d inputs; the data path here is {list(x.onnx_shape)}")
        w = self._weights(inputs[1], "weight B", node, (2,))
        w = w.T if attrs.get("transB", 0) else w
        w = w * self.dtype.type(attrs.get("alpha", 1.0))
        if w.shape[0] != x.shape[0]:
            raise bad(f"{node_label(node)} has weights {w.shape} for {x.shape[0]} input features")
        units = w.shape[1]
        bias = None
        if len(inputs) > 2 and inputs[2] is not None:
            c = self._weights(inputs[2], "bias C", node, (0, 1, 2))
            if c.size not in (1, units) or (c.ndim == 2 and c.shape[0] != 1):
                raise bad(f"{node_label(node)} has bias C of shape {c.shape}; expected ({units},) or (1, {units})")
            bias = np.broadcast_to(c.reshape(-1), (units,)) * self.dtype.type(attrs.get("beta", 1.0))
        arrays = {"kernel": w} if bias is None else {"kernel": w, "bias": bias}
        return self._add(L.Dense(units, use_bias=bias is not None), x, **arrays)

    def _MatMul(self, node, inputs, attrs):
        x = inputs[0]
        if not isinstance(x, Data):
            raise bad(f"{node_label(node)} must take the data path as its first input")
        self._require_plain(x, node, "(batch, ..., features)")
        w = self._weights(inputs[1], "weight", node, (2,))
        if w.shape[0] != x.shape[-1]:
            raise bad(f"{node_label(node)} has weights {w.shape} for {x.shape[-1]} input features")
        return self._add(L.Dense(w.shape[1], use_bias=False), x, kernel=w)

    def _Add(self, node, inputs, attrs):
        if all(isinstance(v, Data) for v in inputs):
            return self._join(node, inputs, L.Add())
        x = inputs[0] if isinstance(inputs[0], Data) else inputs[1]
        other = inputs[1] if x is inputs[0] else inputs[0]
        if self._affine(node, x, other, "Add"):
            return self._data(x.shape, x.axes)
        conv = self._last_open((L.Conv2D,), x)
        if conv is not None and not conv.use_bias and conv.activation.kind == "linear":
            return self._conv_bias(node, conv, x, other)
        dense = self._last_open((L.Dense,), x)
        if dense is None or dense.use_bias or dense.activation.kind != "linear" or not x.plain:
            return self._add_constant(node, x, other, f"{node_label(node)} adds a constant to the data path other "
                                      "than as the bias of a MatMul or Conv right before it whose output nothing else "
                                      "reads (or as the shift of a batch normalization written as Sub, Mul, Add, or "
                                      "one vector per position of sequences); barenet has no layer for that")
        b = self._weights(other, "bias", node, None)
        units = dense.units
        # A bias broadcasts over every axis but the last: (units,), (1, ..., units) or one value. (units, 1)
        # holds one value per unit too, but added to (batch, units) it gives (units, units).
        if b.ndim > len(x.axes) or any(d != 1 for d in b.shape[:-1]) or b.size not in (1, units):
            raise bad(f"{node_label(node)} adds a constant of shape {b.shape} to the "
                      f"({', '.join(map(str, ('batch', *x.shape)))}) output of a MatMul; a bias is one value per "
                      f"unit, of shape ({units},) or (1, ..., {units}), or one value for all")
        dense.use_bias = True
        self._arrays(dense)["bias"] = np.broadcast_to(b.reshape(-1), (units,)).copy()
        return self._data(x.shape, x.axes)

    def _conv_bias(self, node, conv: L.Conv2D, x: Data, c: Any) -> Data:
        """An ``Add`` of one value per filter right after a bias-free ``Conv`` (Keras writes its convolutions
        so) is the convolution's bias."""
        channel = 1 if conv.data_format == "channels_first" else len(x.shape)
        if np.size(c) == 1:
            values, axis = np.full(conv.filters, self._weights(c, "bias", node, None).reshape(-1)[0]), channel
        else:
            values, axis = self._per_channel(node, x, c, "adds")
        if axis != channel or values.shape != (conv.filters,):
            raise bad(f"{node_label(node)} adds a constant of shape {np.shape(c)} to the output of a Conv with "
                      f"{conv.filters} filters (ONNX shape {list(x.onnx_shape)}); a bias is one value per filter")
        conv.use_bias = True
        self._arrays(conv)["bias"] = values
        return self._data(x.shape, x.axes)

    def _Sub(self, node, inputs, attrs):
        if all(isinstance(v, Data) for v in inputs):
            return self._join(node, inputs, L.Subtract())
        x = inputs[0]
        mean, axis = self._per_channel(node, x, inputs[1], "subtracts")
        n = mean.shape[0]
        layer = L.BatchNormalization(axis=axis, epsilon=_AFFINE_EPSILON)
        self.affine[id(layer)] = "Sub"
        return self._add(layer, x, out_axes=x.axes, moving_mean=mean, gamma=np.ones(n, self.dtype),
                         beta=np.zeros(n, self.dtype), moving_variance=np.full(n, _AFFINE_VARIANCE, self.dtype))

    def _Div(self, node, inputs, attrs):
        what = "one data-path tensor by another" if all(isinstance(v, Data) for v in inputs) else \
            "the data path by a constant"
        raise bad(f"{node_label(node)} divides {what}; barenet has no layer for that")

    def _Max(self, node, inputs, attrs):
        return self._join(node, inputs, L.Maximum()) if len(inputs) > 1 else self._Identity(node, inputs, attrs)

    def _Sum(self, node, inputs, attrs):
        return self._join(node, inputs, L.Add()) if len(inputs) > 1 else self._Identity(node, inputs, attrs)

    def _Mean(self, node, inputs, attrs):
        return self._join(node, inputs, L.Average()) if len(inputs) > 1 else self._Identity(node, inputs, attrs)

    def _per_channel(self, node, x: Data, c: Any, verb: str) -> tuple[np.ndarray, int]:
        """A constant that broadcasts against ``x`` as one value per feature or channel: ``(values, axis)``, the
        barenet axis it runs along (one value for all is spread along the last)."""
        c = self._weights(c, "constant", node, None)
        shape = list(x.onnx_shape)
        lengths = [d for d in c.shape if d != 1]
        if c.ndim > len(shape) or len(lengths) > 1 or DIR in x.axes:
            raise bad(f"{node_label(node)} {verb} a constant of shape {c.shape} on the data path "
                      f"{list(shape)}; barenet imports one value per feature or channel (batch normalization)")
        if not lengths:
            return np.full(x.shape[-1], c.reshape(-1)[0], self.dtype), len(x.shape)
        k = len(shape) - c.ndim + next(k for k, d in enumerate(c.shape) if d != 1)
        axis = x.axes[k]
        if axis is None or axis < 1 or shape[k] != lengths[0]:
            raise bad(f"{node_label(node)} {verb} a constant of shape {c.shape} on the data path {list(shape)}; "
                      "barenet imports one value per feature or channel (batch normalization)")
        return c.reshape(-1), axis

    def _affine(self, node, x: Data, c: Any, op: str) -> bool:
        """Fold ``Mul``/``Add`` by a per-channel constant into the batch normalization a ``Sub`` began right before
        (Keras writes its inference-mode batch norm as ``(x - mean) * (gamma / sqrt(var + eps)) + beta``)."""
        bn = self._last_open((L.BatchNormalization,), x)
        stage = self.affine.get(id(bn)) if bn is not None else None
        if stage is None or (op, stage) not in (("Mul", "Sub"), ("Add", "Sub"), ("Add", "Mul")):
            return False
        values, axis = self._per_channel(node, x, c, "multiplies by" if op == "Mul" else "adds")
        if axis != bn.axis or values.shape != self._arrays(bn)["gamma"].shape:
            raise bad(f"{node_label(node)} scales or shifts another axis than the Sub before it subtracted from")
        self._arrays(bn)["gamma" if op == "Mul" else "beta"] = values
        self.affine[id(bn)] = op
        return True

    # ----------------------------------------------------------------- activations
    def _activation(self, node, x: Data, layer: L.Activation, fusable: bool = True):
        host = self._last_open((L.Dense, L.Conv2D, L.Conv1D, L.DepthwiseConv2D), x) if fusable else None
        if host is not None and host.activation.kind == "linear":
            host.activation = layer
            return self._data(x.shape, x.axes)
        return self._add(layer, x, out_axes=x.axes)

    def _Relu(self, node, inputs, attrs):
        return self._activation(node, inputs[0], L.ReLU())

    def _Sigmoid(self, node, inputs, attrs):
        return self._activation(node, inputs[0], L.Sigmoid())

    def _Tanh(self, node, inputs, attrs):
        return self._activation(node, inputs[0], L.Tanh())

    def _LeakyRelu(self, node, inputs, attrs):
        return self._activation(node, inputs[0], L.LeakyReLU(attrs.get("alpha", 0.01)))

    def _Elu(self, node, inputs, attrs):
        return self._activation(node, inputs[0], L.ELU(attrs.get("alpha", 1.0)))

    def _Gelu(self, node, inputs, attrs):
        approximate = attrs.get("approximate", "none")
        if approximate not in ("none", "tanh"):
            raise bad(f"{node_label(node)} has approximate={approximate!r}; expected 'none' or 'tanh'")
        return self._activation(node, inputs[0], L.GELU(approximate=approximate == "tanh"))

    def _Swish(self, node, inputs, attrs):
        if attrs.get("alpha", 1.0) != 1.0:
            raise bad(f"{node_label(node)} has alpha={attrs['alpha']}; barenet's SiLU is x * sigmoid(x) (alpha 1)")
        return self._activation(node, inputs[0], L.SiLU())

    def _Mish(self, node, inputs, attrs):
        return self._activation(node, inputs[0], L.Mish())

    def _HardSwish(self, node, inputs, attrs):
        return self._activation(node, inputs[0], L.HardSwish())

    def _Softplus(self, node, inputs, attrs):
        return self._activation(node, inputs[0], L.Softplus())

    def _HardSigmoid(self, node, inputs, attrs):
        alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
        if abs(alpha - 1 / 6) > 1e-6 or beta != 0.5:
            raise bad(f"{node_label(node)} has alpha={alpha}, beta={beta}; barenet's HardSigmoid is relu6(x + 3) / 6 "
                      "(alpha 1/6, beta 0.5, as in PyTorch and Keras 3)")
        return self._activation(node, inputs[0], L.HardSigmoid())

    def _Clip(self, node, inputs, attrs):
        """Clip to [0, 6] is ReLU6, to [0, inf) ReLU (bounds as constant inputs, opset 11 on)."""
        if self.opset < 11:
            raise bad(f"{node_label(node)} gives its bounds as attributes (opset {self.opset}); barenet reads Clip "
                      "from opset 11")
        low, high = (float(self._const(inputs[k], name, node, (0, 1)).reshape(-1)[0])
                     if len(inputs) > k and inputs[k] is not None else None for k, name in ((1, "min"), (2, "max")))
        if low == 0 and high == 6:
            return self._activation(node, inputs[0], L.ReLU6())
        if low == 0 and high is None:
            return self._activation(node, inputs[0], L.ReLU())
        raise bad(f"{node_label(node)} clips to [{low}, {high}]; barenet imports Clip to [0, 6] (ReLU6) or from 0 "
                  "(ReLU)")

    def _Softmax(self, node, inputs, attrs):
        x = inputs[0]
        rank = len(x.axes)
        axis = attrs.get("axis", -1 if self.opset >= 13 else 1)
        if not -rank <= axis < rank:
            raise bad(f"{node_label(node)} has axis {axis} for a {rank}-d tensor")
        last = axis % rank == rank - 1
        if not last or not x.plain:
            raise bad(f"{node_label(node)} takes the softmax over axis {axis} of {list(x.onnx_shape)}; barenet's "
                      "Softmax works over the last axis")
        return self._activation(node, x, L.Softmax())

    # ----------------------------------------------------------------- images
    def _image(self, x: Data, node: Any) -> tuple[int, int, int, str]:
        """``(channels, height, width, data_format)`` of the NCHW images ``x``: ``channels_first`` when barenet
        holds them as NCHW too, ``channels_last`` when the graph transposed barenet's NHWC tensor to NCHW (as
        barenet's own exporter does), so the layer runs on NHWC and the transposes cancel."""
        if len(x.axes) == 4 and x.axes == (0, 3, 1, 2):
            h, w, c = x.shape
            return c, h, w, "channels_last"
        if len(x.axes) != 4 or not x.plain:
            raise bad(f"{node_label(node)} takes 2-d images (N, C, H, W); the data path here is "
                      f"{list(x.onnx_shape)}")
        c, h, w = x.shape
        return c, h, w, "channels_first"

    def _padding(self, node, attrs, hw, kernel, strides, dilation) -> str | tuple[int, int] | Pads:
        auto = attrs.get("auto_pad", "NOTSET")
        if auto == "VALID":
            return "valid"
        if auto == "SAME_UPPER":
            return "same"
        if auto == "SAME_LOWER":  # the extra pixel at the top/left
            (top, bottom), (left, right) = resolve_padding("same", hw, kernel, strides, dilation)
            return _sides(bottom, top, right, left)
        if auto != "NOTSET":
            raise bad(f"{node_label(node)} has auto_pad={auto!r}; expected NOTSET, VALID, SAME_UPPER or SAME_LOWER")
        pads = attrs.get("pads", [0, 0, 0, 0])
        if len(pads) != 4 or min(pads) < 0:
            raise bad(f"{node_label(node)} has pads {pads}; expected four sizes >= 0")
        top, left, bottom, right = pads
        if not any(pads):
            return "valid"
        same = resolve_padding("same", hw, kernel, strides, dilation)
        if same == ((top, bottom), (left, right)):
            return "same"
        # A window must hold a pixel of the image: a pool has nothing to take otherwise, and a convolution
        # would be asked for ever larger padded copies of its input.
        extent = [(k - 1) * d + 1 for k, d in zip(kernel, dilation, strict=True)]
        if max(top, bottom) < extent[0] and max(left, right) < extent[1]:
            return _sides(top, bottom, left, right)
        raise bad(f"{node_label(node)} has pads {pads}, which barenet's {node.op_type} layer cannot express "
                  f"(it pads fewer pixels than its {extent[0]}x{extent[1]} window spans on each side)")

    def _pairs(self, node, attrs, name, default):
        value = attrs.get(name, default)
        if len(value) != 2 or min(value) < 1:
            raise bad(f"{node_label(node)} has {name}={value}; expected two positive sizes (2-d images)")
        return tuple(int(v) for v in value)

    def _Conv(self, node, inputs, attrs):
        x = inputs[0]
        if x.serial in self.zero_pads:
            x, attrs = self._padded_conv(node, x, attrs)
        if isinstance(inputs[1], np.ndarray) and inputs[1].ndim == 3:
            return self._conv1d(node, x, inputs, attrs)
        c, h, w_, data_format = self._image(x, node)
        weight = self._weights(inputs[1], "weight", node, (4,))
        filters, in_c, kh, kw = weight.shape
        group = attrs.get("group", 1)
        if group < 1 or in_c * group != c or filters % group or min(weight.shape) < 1:
            raise bad(f"{node_label(node)} has weights {weight.shape} in {group} group(s) for {c}-channel images")
        kernel = self._pairs(node, attrs, "kernel_shape", [kh, kw])
        if kernel != (kh, kw):
            raise bad(f"{node_label(node)} declares kernel_shape {list(kernel)} but its weights are {kh}x{kw}")
        strides = self._pairs(node, attrs, "strides", [1, 1])
        dilation = self._pairs(node, attrs, "dilations", [1, 1])
        padding = self._padding(node, attrs, (h, w_), kernel, strides, dilation)
        arrays = {"kernel": weight.transpose(2, 3, 1, 0)}  # (F, C, kh, kw) -> (kh, kw, C, F)
        if len(inputs) > 2 and inputs[2] is not None:
            arrays["bias"] = self._weights(inputs[2], "bias", node, (1,))
            if arrays["bias"].shape != (filters,):
                raise bad(f"{node_label(node)} has a bias of shape {arrays['bias'].shape} for {filters} filters")
        if group == c > 1:  # one group per channel: depthwise, (C * multiplier, 1, kh, kw) -> (kh, kw, C, multiplier)
            arrays["depthwise_kernel"] = weight.reshape(c, filters // c, kh, kw).transpose(2, 3, 0, 1)
            del arrays["kernel"]
            layer = L.DepthwiseConv2D(kernel, strides=strides, padding=padding, depth_multiplier=filters // c,
                                      dilation_rate=dilation, use_bias="bias" in arrays, data_format=data_format)
        else:
            layer = L.Conv2D(filters, kernel, strides=strides, padding=padding, dilation_rate=dilation, groups=group,
                             use_bias="bias" in arrays, data_format=data_format)
        return self._add(layer, x, out_axes=x.axes, **arrays)

    def _padded_conv(self, node, x: Data, attrs) -> tuple[Data, dict[str, Any]]:
        """The input of the Pad before this Conv, and the Conv's attributes with that Pad's amounts added to its
        ``pads`` (ONNX ``[x1_begin, x2_begin, ..., x1_end, x2_end, ...]`` over the spatial axes)."""
        source, full = self.zero_pads[x.serial]
        rank = len(full) // 2
        if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            raise bad(f"{node_label(node)} has auto_pad={attrs['auto_pad']!r} after a Pad; barenet adds a Pad's "
                      "amounts to explicit pads only")
        extra = full[2:rank] + full[rank + 2:]
        own = attrs.get("pads", [0] * len(extra)) if attrs.get("auto_pad", "NOTSET") == "NOTSET" else [0] * len(extra)
        if len(own) != len(extra):
            raise bad(f"{node_label(node)} has pads {own} for {len(extra) // 2} spatial axes")
        return source, {**attrs, "auto_pad": "NOTSET", "pads": [a + b for a, b in zip(own, extra, strict=True)]}

    def _conv1d(self, node, x: Data, inputs, attrs):
        """A Conv on ``(N, C, L)`` sequences: :class:`~barenet.layers.Conv1D` (``channels_last`` where the graph
        transposed barenet's ``(N, L, C)`` first)."""
        if len(x.axes) == 3 and x.axes == (0, 2, 1):
            steps, c = x.shape
            data_format = "channels_last"
        elif len(x.axes) == 3 and x.plain:
            c, steps = x.shape
            data_format = "channels_first"
        else:
            raise bad(f"{node_label(node)} has 1-d weights, for sequences (N, C, L); the data path here is "
                      f"{list(x.onnx_shape)}")
        weight = self._weights(inputs[1], "weight", node, (3,))
        filters, in_c, k = weight.shape
        group = attrs.get("group", 1)
        if group < 1 or in_c * group != c or filters % group or min(weight.shape) < 1:
            raise bad(f"{node_label(node)} has weights {weight.shape} in {group} group(s) for {c}-channel sequences")
        size = {name: attrs.get(name, [default]) for name, default in
                (("kernel_shape", k), ("strides", 1), ("dilations", 1))}
        if any(len(v) != 1 or v[0] < 1 for v in size.values()) or size["kernel_shape"] != [k]:
            raise bad(f"{node_label(node)} has kernel_shape, strides, dilations {list(size.values())}; expected one "
                      f"positive size each, the kernel's {k}")
        stride, dilation = size["strides"][0], size["dilations"][0]
        auto = attrs.get("auto_pad", "NOTSET")
        same = F.same_padding(steps, k, stride, dilation)
        pads = {"VALID": [0, 0], "SAME_UPPER": list(same), "SAME_LOWER": list(same[::-1])}.get(auto) \
            or attrs.get("pads", [0, 0])
        if auto not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER") or len(pads) != 2 or min(pads) < 0 \
                or max(pads) > (k - 1) * dilation:
            raise bad(f"{node_label(node)} has auto_pad={auto!r}, pads {pads}; barenet's Conv1D pads fewer steps "
                      f"than its window spans ({(k - 1) * dilation + 1}) on each side")
        padding = ("valid" if not any(pads) else "same" if tuple(pads) == same
                   else "causal" if pads == [(k - 1) * dilation, 0] else tuple(pads))
        arrays = {"kernel": weight.transpose(2, 1, 0)}  # (F, C / group, k) -> (k, C / group, F)
        if len(inputs) > 2 and inputs[2] is not None:
            arrays["bias"] = self._weights(inputs[2], "bias", node, (1,))
            if arrays["bias"].shape != (filters,):
                raise bad(f"{node_label(node)} has a bias of shape {arrays['bias'].shape} for {filters} filters")
        layer = L.Conv1D(filters, k, strides=stride, padding=padding, dilation_rate=dilation, groups=group,
                         use_bias="bias" in arrays, data_format=data_format)
        return self._add(layer, x, out_axes=x.axes, **arrays)

    def _Pad(self, node, inputs, attrs):
        """A zero Pad of the spatial axes: the Conv right after it takes the amounts (:meth:`_padded_conv`);
        read by anything else, a ZeroPadding2D (:meth:`_zero_padding`)."""
        readers = self.readers.get(node.output[0], [])
        if not readers or any(op != "Conv" for op in readers):
            return self._zero_padding(node, inputs, attrs)
        x = inputs[0]
        if self.opset < 11:
            raise bad(f"{node_label(node)} is a Pad of opset {self.opset}; barenet imports Pad from opset 11 on")
        if attrs.get("mode", "constant") != "constant" or \
                (len(inputs) > 2 and inputs[2] is not None and not _is_zero(inputs[2])):
            raise bad(f"{node_label(node)} pads with mode {attrs.get('mode', 'constant')!r} or a value other than 0; "
                      "barenet imports zero padding only")
        rank = len(x.axes)
        amounts = int_list(inputs[1], "pads", node) if len(inputs) > 1 and inputs[1] is not None else []
        axes = int_list(inputs[3], "axes", node) if len(inputs) > 3 and inputs[3] is not None else list(range(rank))
        if len(amounts) != 2 * len(axes) or any(not -rank <= a < rank for a in axes) \
                or len({a % rank for a in axes}) != len(axes):
            raise bad(f"{node_label(node)} has pads {amounts} for axes {axes} of a {rank}-d tensor")
        full = [0] * (2 * rank)
        for k, a in enumerate(axes):
            full[a % rank], full[a % rank + rank] = amounts[k], amounts[k + len(axes)]
        shape = list(x.shape)
        for k in range(rank):
            before, after = full[k], full[k + rank]
            if not before and not after:
                continue
            if k < 2 or rank not in (3, 4) or min(before, after) < 0 or x.axes[k] in (None, DIR):
                raise bad(f"{node_label(node)} pads {full} a {rank}-d tensor; barenet imports zero padding that "
                          "adds to the spatial axes of (N, C, L) or (N, C, H, W)")
            shape[x.axes[k] - 1] += before + after
        out = self._data(tuple(shape), x.axes)
        self.zero_pads[out.serial] = (x, full)
        return out

    def _pool(self, node, inputs, attrs, cls):
        x = inputs[0]
        _, h, w, data_format = self._image(x, node)
        if len(node.output) > 1 and node.output[1] and self.uses.get(node.output[1]):
            raise bad(f"{node_label(node)} returns indices, which barenet's pooling does not")
        if attrs.get("ceil_mode", 0):
            raise bad(f"{node_label(node)} has ceil_mode=1; barenet's pooling rounds down")
        if any(d != 1 for d in attrs.get("dilations", [1, 1])) or attrs.get("storage_order", 0):
            raise bad(f"{node_label(node)} has dilations or a column-major storage order; barenet's pooling "
                      "has neither")
        kernel = self._pairs(node, attrs, "kernel_shape", [])
        strides = self._pairs(node, attrs, "strides", [1, 1])
        padding = self._padding(node, attrs, (h, w), kernel, strides, (1, 1))
        options = {}
        if cls is L.AveragePooling2D and padding != "valid" and attrs.get("count_include_pad", 0):
            options["count_include_pad"] = True
        return self._add(cls(kernel, strides=strides, padding=padding, data_format=data_format, **options), x,
                         out_axes=x.axes)

    def _MaxPool(self, node, inputs, attrs):
        if len(inputs[0].axes) == 3:
            return self._pool_1d(node, inputs, attrs, L.MaxPooling1D)
        return self._pool(node, inputs, attrs, L.MaxPooling2D)

    def _AveragePool(self, node, inputs, attrs):
        if len(inputs[0].axes) == 3:
            return self._pool_1d(node, inputs, attrs, L.AveragePooling1D)
        return self._pool(node, inputs, attrs, L.AveragePooling2D)

    def _GlobalAveragePool(self, node, inputs, attrs):
        x = inputs[0]
        if len(x.axes) == 3:
            return self._global_pool(node, x, [2], 1, L.GlobalAveragePooling1D)
        data_format = self._image(x, node)[3]
        return self._add(L.GlobalAveragePooling2D(data_format=data_format), x, out_axes=(0, 1, None, None))

    def _ReduceMean(self, node, inputs, attrs):
        """The mean over height and width of NCHW images (what exporters make of adaptive average pooling
        to 1x1) is a global average pool."""
        x = inputs[0]
        if self.opset >= 18:
            axes = int_list(inputs[1], "axes", node) if len(inputs) > 1 and inputs[1] is not None else None
        else:
            axes = attrs.get("axes")
        if len(x.shape) == 2 and axes is not None:  # sequences (N, C, L), perhaps with an axis of size 1 added
            return self._global_pool(node, x, axes, attrs.get("keepdims", 1), L.GlobalAveragePooling1D)
        if len(x.axes) != 4 or axes is None or sorted(a % 4 for a in axes) != [2, 3]:
            raise bad(f"{node_label(node)} averages axes {axes} of {list(x.onnx_shape)}; barenet imports a mean "
                      "only over the height and width of NCHW images (a global average pool)")
        keep = attrs.get("keepdims", 1)
        return self._add(L.GlobalAveragePooling2D(data_format=self._image(x, node)[3]), x,
                         out_axes=(0, 1, None, None) if keep else (0, 1))

    # ----------------------------------------------------------------- layer norm, 1-d and global pools, resize, pad
    def _sequence(self, x: Data, node: Any) -> tuple[int, int, str]:
        """``(channels, steps, data_format)`` of the ``(N, C, L)`` sequences ``x``: ``channels_first`` when barenet
        holds them so, ``channels_last`` when the graph transposed barenet's ``(N, L, C)`` to them."""
        if x.axes == (0, 2, 1):
            steps, c = x.shape
            return c, steps, "channels_last"
        if len(x.axes) != 3 or not x.plain:
            raise bad(f"{node_label(node)} takes sequences (N, C, L); the data path here is {list(x.onnx_shape)}")
        c, steps = x.shape
        return c, steps, "channels_first"

    def _pool_1d(self, node, inputs, attrs, cls):
        x = inputs[0]
        _, steps, data_format = self._sequence(x, node)
        if len(node.output) > 1 and node.output[1] and self.uses.get(node.output[1]):
            raise bad(f"{node_label(node)} returns indices, which barenet's pooling does not")
        if attrs.get("ceil_mode", 0) or any(d != 1 for d in attrs.get("dilations", [1])):
            raise bad(f"{node_label(node)} has ceil_mode=1 or dilations; barenet's pooling has neither")
        kernel, strides = attrs.get("kernel_shape", []), attrs.get("strides", [1])
        if len(kernel) != 1 or len(strides) != 1 or min(*kernel, *strides) < 1:
            raise bad(f"{node_label(node)} has kernel_shape={kernel}, strides={strides}; expected one positive size "
                      "each (1-d sequences)")
        k, stride = kernel[0], strides[0]
        pads = tuple(attrs.get("pads", [0, 0]))
        auto = attrs.get("auto_pad", "NOTSET")
        same = resolve_padding("same", (1, steps), (1, k), (1, stride), (1, 1))[1]
        if auto == "VALID" or auto == "NOTSET" and not any(pads):
            padding = "valid"
        elif auto == "SAME_UPPER" or auto == "NOTSET" and pads == same:
            padding = "same"
        else:
            raise bad(f"{node_label(node)} has pads {list(pads)} (auto_pad={auto!r}), which barenet's {cls.__name__} "
                      "cannot express ('valid', or 'same' with the extra step at the end)")
        if cls is L.AveragePooling1D and padding != "valid" and attrs.get("count_include_pad", 0):
            raise bad(f"{node_label(node)} counts padding in its averages; barenet's AveragePooling1D does not")
        return self._add(cls(k, strides=stride, padding=padding, data_format=data_format), x, out_axes=x.axes)

    def _global_pool(self, node, x: Data, axes: list[int], keepdims: int, cls) -> Data:
        """A mean or maximum over the image axes (or the steps) of the data path as a global pooling layer, its
        data format read from which barenet axes are reduced."""
        rank = len(x.axes)
        if any(not -rank <= a < rank for a in axes):
            raise bad(f"{node_label(node)} reduces axes {axes} of a {rank}-d tensor")
        onnx_axes = sorted({a % rank for a in axes})
        reduced = sorted(x.axes[a] for a in onnx_axes if x.axes[a] is not None)
        spatial = len(x.shape) - 1  # 2 for images, 1 for sequences
        layouts = {tuple(range(1, spatial + 1)): "channels_last", tuple(range(2, spatial + 2)): "channels_first"}
        kept = [a for k, a in enumerate(x.axes) if k not in onnx_axes and a is not None]
        layout = layouts.get(tuple(reduced)) if len(x.shape) in (2, 3) and 0 in kept else None
        if layout is None or cls.__name__.endswith("1D") != (spatial == 1):
            raise bad(f"{node_label(node)} reduces axes {axes} of {list(x.onnx_shape)}; barenet imports a mean or "
                      "maximum only over the height and width of images or the steps of sequences (a global pool)")
        out_axes = tuple(None if k in onnx_axes or a is None else 0 if a == 0 else 1 for k, a in enumerate(x.axes)
                         if keepdims or k not in onnx_axes)
        return self._add(cls(data_format=layout), self._data(x.shape, tuple(range(len(x.shape) + 1))),
                         out_axes=out_axes)

    def _GlobalMaxPool(self, node, inputs, attrs):
        x = inputs[0]
        rank = len(x.axes)
        cls = L.GlobalMaxPooling1D if rank == 3 else L.GlobalMaxPooling2D
        return self._global_pool(node, x, list(range(2, rank)), 1, cls)

    def _ReduceMax(self, node, inputs, attrs):
        x = inputs[0]
        if self.opset >= 18:
            axes = int_list(inputs[1], "axes", node) if len(inputs) > 1 and inputs[1] is not None else None
        else:
            axes = attrs.get("axes")
        if axes is None:
            raise bad(f"{node_label(node)} takes the maximum over all axes; barenet imports it only over the height "
                      "and width of images or the steps of sequences (a global pool)")
        cls = L.GlobalMaxPooling1D if len(x.shape) == 2 else L.GlobalMaxPooling2D
        return self._global_pool(node, x, axes, attrs.get("keepdims", 1), cls)

    def _LayerNormalization(self, node, inputs, attrs):
        """Normalization over the axes from ``axis`` to the last, each mapped to the barenet axis it is; the scale
        and bias may carry leading axes of size 1 (as a decomposed layer norm's constants do)."""
        x = inputs[0]
        if any(name and self.uses.get(name) for name in node.output[1:]):
            raise bad(f"{node_label(node)} outputs its mean or inverse deviation; barenet imports only the result")
        rank = len(x.axes)
        axis = attrs.get("axis", -1)
        if not -rank < axis < rank or axis % rank == 0:
            raise bad(f"{node_label(node)} has axis {axis} for a {rank}-d tensor; barenet normalizes each sample, "
                      "over axes after the batch")
        mapped = [x.axes[a] for a in range(axis % rank, rank)]
        if any(a is None or a == 0 or a == DIR for a in mapped):
            raise bad(f"{node_label(node)} normalizes axes of {list(x.onnx_shape)} that barenet cannot name")
        shape = [x.shape[a - 1] for a in mapped]
        arrays, order = {}, np.argsort(mapped)
        for k, key in ((1, "gamma"), (2, "beta")):
            if len(inputs) > k and inputs[k] is not None:
                w = self._weights(inputs[k], "scale" if k == 1 else "bias", node, tuple(range(rank + 1)))
                if w.size != int(np.prod(shape)) or any(d != 1 for d in w.shape[:w.ndim - len(shape)]):
                    raise bad(f"{node_label(node)} has a {'scale' if k == 1 else 'bias'} of shape {w.shape} for "
                              f"normalized axes of sizes {shape}")
                arrays[key] = w.reshape(shape).transpose(order)
        eps = float(str(np.float32(attrs.get("epsilon", 1e-5))))  # the float32 attribute's shortest decimal: 1e-05
        if not eps > 0:
            raise bad(f"{node_label(node)} has epsilon {eps}; expected a value > 0")
        axes = sorted(mapped)
        layer = L.LayerNormalization(axis=-1 if axes == [len(x.shape)] else axes, epsilon=eps, center="beta" in arrays,
                                     scale="gamma" in arrays)
        return self._add(layer, self._data(x.shape, tuple(range(len(x.shape) + 1))), out_axes=x.axes, **arrays)

    def _Resize(self, node, inputs, attrs):
        """Resizing NCHW images by whole factors, given as scales or as output sizes, as UpSampling2D: nearest with
        the coordinates rounded down (``asymmetric`` + ``floor``, or ``half_pixel`` + rounding, which agree for whole
        factors), or linear with half-pixel centres."""
        x = inputs[0]
        data_format = self._image(x, node)[3]
        if self.opset < 11:
            raise bad(f"{node_label(node)} is an opset-{self.opset} Resize; barenet reads Resize from opset 11")
        mode = attrs.get("mode", "nearest")
        coordinates = attrs.get("coordinate_transformation_mode", "half_pixel")
        nearest = attrs.get("nearest_mode", "round_prefer_floor")
        if mode == "nearest":
            ok = (coordinates, nearest) == ("asymmetric", "floor") or coordinates in ("half_pixel",
                                                                                       "pytorch_half_pixel") \
                and nearest in ("round_prefer_floor", "round_prefer_ceil")
        else:
            ok = mode == "linear" and coordinates in ("half_pixel", "pytorch_half_pixel")
        if not ok or attrs.get("antialias", 0) or "axes" in attrs:
            raise bad(f"{node_label(node)} resizes with mode={mode!r}, coordinate_transformation_mode={coordinates!r}, "
                      f"nearest_mode={nearest!r}; barenet's UpSampling2D is nearest (asymmetric + floor) or linear "
                      "(half_pixel), without antialias or axes")
        given = inputs[2] if len(inputs) > 2 else None
        if len(inputs) > 3 and inputs[3] is not None:
            if given is not None and np.size(given):
                raise bad(f"{node_label(node)} gives both scales and sizes; ONNX takes one of them")
            scales = self._sizes_as_scales(node, x, inputs[3], attrs)
        else:
            scales = self._const(given, "scales", node, (1,))
        if scales.shape != (4,) or np.any(scales != np.round(scales)) or list(scales[:2]) != [1, 1] \
                or np.any(scales < 1):
            raise bad(f"{node_label(node)} has scales {scales.tolist()}; barenet's UpSampling2D scales height and "
                      "width by whole factors")
        size = (int(scales[2]), int(scales[3]))
        interpolation = "nearest" if mode == "nearest" else "bilinear"
        return self._add(L.UpSampling2D(size, interpolation, data_format=data_format), x, out_axes=x.axes)

    def _sizes_as_scales(self, node, x: Data, sizes: Any, attrs: dict[str, Any]) -> np.ndarray:
        """The scales of a Resize to constant output ``sizes`` (``F.interpolate(size=...)``,
        ``nn.Upsample(size=...)``): the batch and the channels kept, the height and width divided by the input's."""
        shape = list(x.onnx_shape)
        policy = attrs.get("keep_aspect_ratio_policy", "stretch")
        if not isinstance(sizes, np.ndarray) or sizes.ndim != 1 or sizes.dtype.kind not in "iuO" or policy != "stretch":
            raise bad(f"{node_label(node)} resizes to sizes that are not a constant vector, or with "
                      f"keep_aspect_ratio_policy={policy!r}; barenet imports sizes given in full ('stretch')")
        target = [t if t is BATCH else int(t) for t in sizes]
        if len(target) == 4 and target[0] is not BATCH and target[0] == self.fixed_batch:
            target[0] = BATCH  # a graph exported for one batch size names it where it means the batch
        if len(target) != 4 or target[:2] != shape[:2] or any(t is BATCH or t < d or t % d
                                                               for t, d in zip(target[2:], shape[2:], strict=True)):
            raise bad(f"{node_label(node)} resizes {shape} to sizes {target}; barenet's UpSampling2D keeps the batch "
                      "and the channels and enlarges the height and width by whole factors")
        return np.array([1.0, 1.0, int(target[2]) // shape[2], int(target[3]) // shape[3]], dtype=float)

    def _zero_padding(self, node, inputs, attrs):
        """Zeros around the height and width of images: pads on barenet axes 1 and 2 are a channels-last
        ZeroPadding2D, on axes 2 and 3 a channels-first one."""
        x = inputs[0]
        rank = len(x.axes)
        if attrs.get("mode", "constant") != "constant" or len(inputs) > 3 and inputs[3] is not None:
            raise bad(f"{node_label(node)} pads in mode {attrs.get('mode')!r} or along given axes; barenet imports "
                      "constant zero padding with a pad for every axis")
        if len(inputs) > 2 and inputs[2] is not None and np.any(self._const(inputs[2], "constant_value", node)):
            raise bad(f"{node_label(node)} pads with a value other than zero")
        pads = int_list(inputs[1], "pads", node)
        if len(pads) != 2 * rank or min(pads) < 0:
            raise bad(f"{node_label(node)} has pads {pads}; expected {2 * rank} sizes >= 0")
        padded = {x.axes[k]: (pads[k], pads[k + rank]) for k in range(rank) if pads[k] or pads[k + rank]}
        if not padded:
            return self._data(x.shape, x.axes)
        first = 1 if set(padded) <= {1, 2} else 2 if set(padded) <= {2, 3} else None
        if len(x.shape) != 3 or first is None:
            raise bad(f"{node_label(node)} pads {list(x.onnx_shape)} with {pads}; barenet imports zero padding of "
                      "the height and width of images (ZeroPadding2D)")
        padding = (padded.get(first, (0, 0)), padded.get(first + 1, (0, 0)))
        layer = L.ZeroPadding2D(padding, data_format="channels_last" if first == 1 else "channels_first")
        return self._add(layer, self._data(x.shape, tuple(range(len(x.shape) + 1))), out_axes=x.axes)

    def _BatchNormalization(self, node, inputs, attrs):
        x = inputs[0]
        if attrs.get("training_mode", 0) or any(name and self.uses.get(name) for name in node.output[1:]):
            raise bad(f"{node_label(node)} is in training mode; export the model in eval mode")
        gamma, beta, mean, var = (self._weights(inputs[k], what, node, (1,))
                                  for k, what in enumerate(("scale", "B", "input_mean", "input_var"), start=1))
        eps = attrs.get("epsilon", 1e-5)
        if not eps > 0 or np.any(var + eps <= 0):
            raise bad(f"{node_label(node)} has a non-positive variance + epsilon")
        channels_last = (len(x.axes) == 4 and self._image(x, node)[3] == "channels_last") or x.axes == (0, 2, 1)
        if not channels_last:
            self._require_plain(x, node, "(batch, channels, ...)")
        channels = x.shape[-1] if channels_last else x.shape[0]
        if any(a.shape != (channels,) for a in (gamma, beta, mean, var)):
            raise bad(f"{node_label(node)} has statistics of the wrong length for {channels} channels")
        if len(x.shape) == 1 or channels_last:  # barenet normalizes the last axis: features, or NHWC channels
            layer = L.BatchNormalization(momentum=attrs.get("momentum", 0.9), epsilon=eps)
            return self._add(layer, x, out_axes=x.axes, gamma=gamma, beta=beta, moving_mean=mean,
                             moving_variance=var)
        conv = self._last_open((L.Conv2D, L.Conv1D, L.DepthwiseConv2D), x)
        if conv is None or conv.activation.kind != "linear":  # not foldable: a layer normalizing axis 1
            layer = L.BatchNormalization(axis=1, momentum=attrs.get("momentum", 0.9), epsilon=eps)
            return self._add(layer, x, out_axes=x.axes, gamma=gamma, beta=beta, moving_mean=mean,
                             moving_variance=var)
        # y = gamma (conv(x) + b - mean) / sqrt(var + eps) + beta: scale the filters, shift the bias.
        scale = (gamma / np.sqrt(var + eps)).astype(self.dtype)
        arrays = self._arrays(conv)
        bias = arrays.get("bias", np.zeros(channels, dtype=self.dtype))
        if isinstance(conv, L.DepthwiseConv2D):  # output channel c * multiplier + m is kernel[..., c, m]
            arrays["depthwise_kernel"] = arrays["depthwise_kernel"] * scale.reshape(-1, conv.depth_multiplier)
        else:
            arrays["kernel"] = arrays["kernel"] * scale
        arrays["bias"] = ((bias - mean) * scale + beta).astype(self.dtype)
        conv.use_bias = True
        return self._data(x.shape, x.axes)

    # ----------------------------------------------------------------- recurrent
    def _recurrent(self, node, inputs, attrs):
        op = node.op_type
        x = inputs[0]
        layout = attrs.get("layout", 0)
        expected = (1, 0, 2) if layout == 0 else (0, 1, 2)
        if x.axes != expected or len(x.shape) != 2:
            raise bad(f"{node_label(node)} (layout={layout}) needs the model input's sequences as "
                      f"{'(time, batch, features)' if layout == 0 else '(batch, time, features)'}; the data path "
                      f"here is {list(x.onnx_shape)}")
        direction = attrs.get("direction", "forward")
        if direction not in ("forward", "bidirectional"):
            raise bad(f"{node_label(node)} runs direction={direction!r}; barenet imports forward and "
                      "bidirectional recurrent operators")
        dirs = 2 if direction == "bidirectional" else 1
        for name in ("clip", "activation_alpha", "activation_beta"):
            if name in attrs:
                raise bad(f"{node_label(node)} sets {name}, which barenet's {op} layer does not have")
        if attrs.get("input_forget", 0):
            raise bad(f"{node_label(node)} couples the input and forget gates (input_forget=1)")
        gates = {"RNN": 1, "LSTM": 4, "GRU": 3}[op]
        w = self._weights(inputs[1], "W", node, (3,))
        r = self._weights(inputs[2], "R", node, (3,))
        units = attrs.get("hidden_size", r.shape[-1])
        features = x.shape[1]
        if w.shape != (dirs, gates * units, features) or r.shape != (dirs, gates * units, units) or units < 1:
            raise bad(f"{node_label(node)} has W {w.shape} and R {r.shape}; expected ({dirs}, {gates}*{units}, "
                      f"{features}) and ({dirs}, {gates}*{units}, {units})")
        if len(inputs) > 3 and inputs[3] is not None:
            b = self._weights(inputs[3], "B", node, (2,))
            if b.shape != (dirs, 2 * gates * units):
                raise bad(f"{node_label(node)} has B {b.shape}; expected ({dirs}, {2 * gates * units})")
        else:
            b = np.zeros((dirs, 2 * gates * units), dtype=self.dtype)
        if len(inputs) > 4 and inputs[4] is not None:
            raise bad(f"{node_label(node)} takes sequence_lens; barenet runs every sequence to its full length")
        for k in range(5, len(inputs)):
            if inputs[k] is not None and not _is_zero(inputs[k]):
                what = {5: "initial_h", 6: "initial_c", 7: "P (peepholes)"}.get(k, f"input {k}")
                raise bad(f"{node_label(node)} has a non-zero {what}; barenet imports recurrent layers that "
                          "start from zeros, without peepholes")
        acts = [a.lower() for a in attrs.get("activations", _RNN_DEFAULTS[op] * dirs)]
        per_direction = len(acts) // dirs
        if len(acts) % dirs or acts[:per_direction] * dirs != acts:
            raise bad(f"{node_label(node)} uses activations {attrs['activations']}; barenet's Bidirectional runs "
                      "the same activations both ways")
        acts = acts[:per_direction]
        activation = "tanh"
        if op == "RNN" and len(acts) == 1 and acts[0] in ("tanh", "relu", "sigmoid"):
            activation = acts[0]
        elif acts != _RNN_DEFAULTS[op]:
            raise bad(f"{node_label(node)} uses activations {attrs['activations']}; barenet's {op} uses "
                      f"{_RNN_DEFAULTS[op]}")
        uses = [bool(name and self.uses.get(name)) for name in node.output]
        uses += [False] * (3 - len(uses))
        if uses[2] or (uses[0] and uses[1]):
            raise bad(f"{node_label(node)} feeds on its cell state or on two of its outputs; barenet imports "
                      "recurrent operators used through Y or Y_h alone")
        reset_after = bool(attrs.get("linear_before_reset", 0))
        if op == "LSTM":
            layer = L.LSTM(units, return_sequences=not uses[1], unit_forget_bias=False)
        elif op == "GRU":
            layer = L.GRU(units, return_sequences=not uses[1], reset_after=reset_after)
        else:
            layer = L.SimpleRNN(units, activation=activation, return_sequences=not uses[1])
        arrays = [_recurrent_arrays(op, w[d], r[d], b[d], reset_after) for d in range(dirs)]
        # ONNX outputs: Y (time, dirs, batch, units) or Y_h (dirs, batch, units); batch first with layout=1
        if uses[1]:
            axes = (DIR, 0, 1) if layout == 0 else (0, DIR, 1)
        else:
            axes = (1, DIR, 0, 2) if layout == 0 else (0, 1, DIR, 2)
        x = self._data(x.shape, (0, 1, 2))
        if dirs == 1:
            out = self._add(layer, x, out_axes=tuple(None if a == DIR else a for a in axes), **arrays[0])
        else:
            bi = L.Bidirectional(layer, merge_mode="concat")  # the merge is read from the operators that follow
            named = {f"{prefix}_{k}": v for prefix, a in zip(("forward", "backward"), arrays, strict=True)
                     for k, v in a.items()}
            if self.pending is not None:
                raise bad(f"{node_label(node)} is a second bidirectional node while the directions of "
                          f"{self.pending.label} are not merged yet; barenet merges them right after the recurrence")
            tensor = self._add(bi, x, **named).tensor
            out = self._data(layer.compute_output_shape(x.shape), axes, tensor)
            self.pending = _Unmerged(bi, node_label(node), out, tensor)
        return [None, out] if uses[1] else [out, None]

    _RNN = _LSTM = _GRU = _recurrent

    def _bidirectional_step(self, node, inputs, attrs, on_path: list[Data]) -> list[Any]:
        """A node between a bidirectional recurrent node and the merge of its two directions.

        Before the merge the node's output (with its direction axis) and each direction taken from it
        (``Gather`` on that axis) may only be moved about; each is read once, but for the one ``Gather``
        per direction. The merge is a ``Concat``/``Add``/``Mul`` of the two directions, or a ``Reshape`` that
        folds the direction axis into the features right after it (concatenation).
        """
        p = self.pending
        if len(on_path) == 2:
            return [self._merge(node, inputs, attrs)]
        x = on_path[0]
        refuse = (f"{node_label(node)} works on one direction of {p.label} before the two are merged; barenet's "
                  "Bidirectional merges them right after the recurrence (concat, sum, mul or ave)")
        if node.op_type not in _BIDIRECTIONAL_MOVES or x is not inputs[0]:
            raise bad(refuse)
        if x.half is None:
            gathers = node.op_type == "Gather" and p.reads == len(p.picked) and len(p.picked) < 2
            if x is not p.both or (p.reads and not gathers):
                raise bad(f"{node_label(node)} reads the output of {p.label} that another operator also reads; "
                          "barenet takes it once, or once per direction")
            p.reads += 1
        elif x is not p.tips[x.half]:
            raise bad(f"{node_label(node)} reads direction {x.half} of {p.label} a second time; barenet's "
                      "Bidirectional gives the two directions merged, once")
        n_calls = len(self.calls)
        outs = getattr(self, "_" + node.op_type)(node, inputs, attrs)
        if len(self.calls) != n_calls:
            raise bad(refuse)
        if self.pending is None:  # a Reshape concatenated the directions
            return [outs]
        if x.half is not None:
            outs = replace(outs, half=x.half)
            p.tips[x.half] = outs
        elif outs.half is not None:
            p.picked.add(outs.half)
            p.tips[outs.half] = outs
        else:
            p.both, p.reads = outs, 0
        return [outs]

    def _merge(self, node, inputs, attrs) -> Data:
        """Join the two directions of the pending bidirectional node: set its ``merge_mode``."""
        p = self.pending
        halves = [x for x in inputs if isinstance(x, Data)]
        if (node.op_type not in ("Concat", "Add", "Mul") or len(inputs) != 2 or {h.half for h in halves} != {0, 1}
                or any(h is not p.tips[h.half] for h in halves) or halves[0].axes != halves[1].axes):
            raise bad(f"{node_label(node)} combines two data-path tensors other than by merging the two directions "
                      f"of {p.label} (Concat over the features, Add or Mul of both, each read once)")
        first = halves[0]
        if node.op_type == "Concat":
            axis = attrs.get("axis")
            rank = len(first.axes)
            if axis is None or not -rank <= axis < rank or first.axes[axis % rank] != len(first.shape) \
                    or first.half != 0:
                raise bad(f"{node_label(node)} concatenates the directions of {p.label} along axis {axis} "
                          f"(ONNX shape {list(first.onnx_shape)}) in the order {[h.half for h in halves]}; barenet "
                          "concatenates the forward then the backward direction along the features")
            p.layer.merge_mode = "concat"
            shape = (*first.shape[:-1], 2 * first.shape[-1])
        else:
            p.layer.merge_mode = "sum" if node.op_type == "Add" else "mul"
            shape = first.shape
        self.pending = None
        return self._data(shape, first.axes)

    def _Concat(self, node, inputs, attrs):
        if not all(isinstance(v, Data) for v in inputs):
            raise bad(f"{node_label(node)} concatenates the data path with constants; barenet concatenates computed "
                      "tensors only")
        if len(inputs) == 1:
            return self._Identity(node, inputs, attrs)
        first = inputs[0]
        rank = len(first.axes)
        axis = attrs.get("axis")
        if axis is None or not -rank <= axis < rank or first.axes[axis % rank] in (None, 0, DIR):
            raise bad(f"{node_label(node)} concatenates along axis {axis} of ONNX shape {list(first.onnx_shape)}; "
                      "barenet concatenates along an axis of each sample")
        return self._join(node, inputs, L.Concatenate(axis=first.axes[axis % rank]))

    def _Mul(self, node, inputs, attrs):
        if all(isinstance(v, Data) for v in inputs):
            return self._join(node, inputs, L.Multiply())
        x = inputs[0] if isinstance(inputs[0], Data) else inputs[1]
        other = inputs[1] if x is inputs[0] else inputs[0]
        bi = self._last_open((L.Bidirectional,), x)
        if bi is not None and bi.merge_mode == "sum" and isinstance(other, np.ndarray) and other.dtype != object \
                and other.size == 1 and other.ndim <= len(x.axes) and float(other.reshape(-1)[0]) == 0.5:
            bi.merge_mode = "ave"
            return self._data(x.shape, x.axes)
        if self._affine(node, x, other, "Mul"):
            return self._data(x.shape, x.axes)
        raise bad(f"{node_label(node)} multiplies the data path by a constant; barenet imports that only as the "
                  "0.5 of the average of a bidirectional recurrent node's directions after their Add, or as the "
                  "scale of a batch normalization written as Sub, Mul, Add")

    def _last_step(self, x: Data, axis: int, index: int, node: Any, keep: bool) -> Data:
        """Select the last time step of a recurrent layer's sequence output along ONNX ``axis``."""
        rnn = self._last_open((L.Recurrent,), x)
        steps = x.shape[0]
        if rnn is None or not rnn.return_sequences or x.axes[axis] != 1:
            return self._crop(node, x, axis, range(steps)[index:][:1], keep)
        if index not in (-1, steps - 1):
            raise bad(f"{node_label(node)} selects time step {index} of {steps}; barenet imports the last step only")
        rnn.return_sequences = False
        axes = [None if a == 1 else a if a is None or a < 1 else a - 1 for a in x.axes]
        if not keep:
            del axes[axis]
        return self._data(x.shape[1:], tuple(axes))

    # ----------------------------------------------------------------- gather, slice, reshape
    def _is_embedding(self, inputs) -> bool:
        return (len(inputs) == 2 and isinstance(inputs[1], Data) and isinstance(inputs[0], np.ndarray)
                and inputs[1].tensor.integer and inputs[1].tensor.call is None)

    def _Gather(self, node, inputs, attrs):
        data, idx = inputs[0], inputs[1]
        axis = attrs.get("axis", 0)
        if isinstance(idx, Data):
            if not isinstance(data, np.ndarray) or axis != 0 or not self._is_embedding(inputs):
                raise bad(f"{node_label(node)} looks rows up with data-path indices; barenet imports that only as "
                          "an Embedding of a constant table by an integer input of the model")
            self._require_plain(idx, node, "(batch, time) token ids")
            table = self._weights(data, "embedding table", node, (2,))
            self.onnx_dtype = self.onnx_dtype or data.dtype
            layer = L.Embedding(table.shape[0], table.shape[1])
            return self._add(layer, idx, embeddings=table)
        if not isinstance(data, Data):
            raise bad(f"{node_label(node)} has no data-path input")
        index = int_list(idx, "indices", node)
        if np.ndim(idx) != 0 or len(index) != 1:
            raise bad(f"{node_label(node)} gathers {np.shape(idx)} indices from the data path; barenet imports "
                      "the selection of one (last) time step")
        if not -len(data.axes) <= axis < len(data.axes):
            raise bad(f"{node_label(node)} gathers along axis {axis} of a {len(data.axes)}-d tensor")
        axis %= len(data.axes)
        if data.axes[axis] == DIR:
            if not -2 <= index[0] < 2:
                raise bad(f"{node_label(node)} takes direction {index[0]} of {self.pending.label}, which has two")
            return replace(self._data(data.shape, data.axes[:axis] + data.axes[axis + 1:]), half=index[0] % 2)
        if data.axes[axis] is None and index[0] in (0, -1):  # the one entry of a size-1 axis: a squeeze
            return self._data(data.shape, data.axes[:axis] + data.axes[axis + 1:])
        return self._last_step(data, axis, index[0], node, keep=False)

    def _Slice(self, node, inputs, attrs):
        x = inputs[0]
        shape = list(x.onnx_shape)
        index = slice_index(shape, *slice_arguments(node, inputs, attrs, self.opset), node)
        changed = [k for k, (d, s) in enumerate(zip(shape, index, strict=True))
                   if d is not BATCH and range(*s.indices(d)) != range(d)]
        if not changed:
            return self._data(x.shape, x.axes)
        if len(changed) == 1:
            k = changed[0]
            picked = range(*index[k].indices(shape[k]))
            if len(picked) == 1:
                return self._last_step(x, k, picked[0], node, keep=True)
            return self._crop(node, x, k, picked, True)
        raise bad(f"{node_label(node)} slices the data path; barenet imports only the selection of the last "
                  "time step of a recurrent layer's output")

    def _Transpose(self, node, inputs, attrs):
        x = inputs[0]
        perm = attrs.get("perm", list(range(len(x.axes)))[::-1])
        if sorted(perm) != list(range(len(x.axes))):
            raise bad(f"{node_label(node)} has perm {perm}, not a permutation of {len(x.axes)} axes")
        return self._data(x.shape, tuple(x.axes[p] for p in perm))

    def _Identity(self, node, inputs, attrs):
        x = inputs[0]
        return self._data(x.shape, x.axes)

    def _Cast(self, node, inputs, attrs):
        """A cast to the type the data path already has passes through (Keras's exports hold many); any other
        would change what the graph computes."""
        x = inputs[0]
        to = attrs.get("to")
        target = TENSOR_TYPES[to][0].newbyteorder("=") if to in TENSOR_TYPES else None
        ids = x.tensor.integer and x.tensor.call is None
        source = "integer ids" if ids else (self.onnx_dtype or np.dtype("float32")).name
        if target is None or (target.kind not in "iu" if ids else target.name != source):
            raise bad(f"{node_label(node)} casts the data path ({source}) to ONNX type {to}; barenet imports a "
                      "Cast only to the type the data already has")
        return self._data(x.shape, x.axes)

    def _Dropout(self, node, inputs, attrs):
        x = inputs[0]
        if len(node.output) > 1 and node.output[1] and self.uses.get(node.output[1]):
            raise bad(f"{node_label(node)} outputs its mask; barenet imports inference-mode Dropout only")
        if len(inputs) > 2 and inputs[2] is not None and np.any(self._const(inputs[2], "training_mode", node)):
            raise bad(f"{node_label(node)} is in training mode; export the model in eval mode")
        if self.opset >= 12:
            rate = float(self._const(inputs[1], "ratio", node, (0,))) if len(inputs) > 1 and \
                inputs[1] is not None else 0.5
        else:
            rate = attrs.get("ratio", 0.5)
        if not 0.0 <= rate < 1.0:
            raise bad(f"{node_label(node)} has ratio {rate}; expected a value in [0, 1)")
        return self._add(L.Dropout(rate), x, out_axes=x.axes) if rate > 0 else self._data(x.shape, x.axes)

    def _Flatten(self, node, inputs, attrs):
        x = inputs[0]
        shape = list(x.onnx_shape)
        axis = attrs.get("axis", 1)
        if not -len(shape) <= axis <= len(shape):
            raise bad(f"{node_label(node)} has axis {axis} for a {len(shape)}-d tensor")
        axis %= len(shape) + 1
        first = shape[:axis]
        if BATCH in first and all(d is BATCH or d == 1 for d in first):
            target = [BATCH, -1]
        elif BATCH not in first:
            target = [int(np.prod(first, dtype=object)), -1]
        else:
            raise bad(f"{node_label(node)} flattens {shape} at axis {axis}, merging the batch axis with others")
        return self._reshape(x, target, 0, node)

    def _Reshape(self, node, inputs, attrs):
        target = inputs[1]
        if not isinstance(target, np.ndarray) or target.ndim != 1 or target.dtype.kind not in "iuO":
            raise bad(f"{node_label(node)} reshapes the data path to a shape that is not a constant vector")
        target = list(target)
        # A graph exported for one batch size (torch.onnx.export's default) names it where it means the batch.
        if self.fixed_batch is not None and target and target[0] is not BATCH and target[0] == self.fixed_batch \
                and inputs[0].onnx_shape[0] is BATCH:
            target[0] = BATCH
        return self._reshape(inputs[0], target, attrs.get("allowzero", 0), node)

    def _Squeeze(self, node, inputs, attrs):
        x = inputs[0]
        shape = list(x.onnx_shape)
        axes = self.folder._axes(node, inputs, attrs)
        if axes is None:
            axes = [k for k, d in enumerate(shape) if d == 1]
        if any(not -len(shape) <= a < len(shape) or shape[a] != 1 for a in axes):
            raise bad(f"{node_label(node)} squeezes axes {axes} of {shape}; only size-1 axes can go")
        drop = {a % len(shape) for a in axes}
        return self._reshape(x, [d for k, d in enumerate(shape) if k not in drop], 0, node)

    def _Unsqueeze(self, node, inputs, attrs):
        x = inputs[0]
        shape = list(x.onnx_shape)
        axes = self.folder._axes(node, inputs, attrs)
        rank = len(shape) + len(axes or [])
        if not axes or any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
            raise bad(f"{node_label(node)} has axes {axes} for a {len(shape)}-d tensor")
        new, it = [], iter(shape)
        where = {a % rank for a in axes}
        for k in range(rank):
            new.append(1 if k in where else next(it))
        return self._reshape(x, new, 0, node)

    def _reshape(self, x: Data, target: list[Any], allowzero: int, node: Any) -> Data:
        """Reshape the data path to ``target`` (ONNX semantics): relabel when only size-1 axes move, else
        reshape each sample with a layer."""
        src = list(x.onnx_shape)
        dst = resolve_shape(src, target, allowzero, node)
        if DIR in x.axes:
            k = x.axes.index(DIR)
            units = len(x.shape)
            if k + 1 < len(x.axes) and x.axes[k + 1] == units and dst == src[:k] + [2 * src[k + 1]] + src[k + 2:]:
                self.pending.layer.merge_mode = "concat"
                self.pending = None
                return self._data((*x.shape[:-1], 2 * x.shape[-1]), x.axes[:k] + x.axes[k + 1:])
        mapped = [(d, a) for d, a in zip(src, x.axes, strict=True) if a is not None]
        if all(d is BATCH or d != 1 for d, _ in mapped) and [d for d, _ in mapped] == [d for d in dst if d != 1]:
            it = iter(a for _, a in mapped)
            return self._data(x.shape, tuple(None if d == 1 else next(it) for d in dst))
        return self._to_batch_major(x, dst, node)

    def _to_batch_major(self, x: Data, dst: list[Any], node: Any) -> Data:
        order = [a for a in x.axes if a is not None]
        lead = dst.index(BATCH) if BATCH in dst else -1
        if order != list(range(len(order))) or lead < 0 or any(d != 1 for d in dst[:lead]):
            where = node_label(node) if node is not None else "the graph output"
            raise bad(f"{where} needs the data path as {list(dst)}, which would move the batch axis or reorder "
                      f"axes (it is {list(x.onnx_shape)}); barenet's layers cannot express that")
        sample = tuple(int(d) for d in dst[lead + 1:])
        axes = tuple([None] * lead + list(range(len(sample) + 1)))
        if sample == x.shape:
            return self._data(x.shape, axes, x.tensor)
        if int(np.prod(sample, dtype=object)) != int(np.prod(x.shape, dtype=object)):
            raise bad(f"cannot reshape samples of shape {x.shape} to {sample}")
        layer = L.Flatten() if len(sample) == 1 else L.Reshape(sample)
        return self._add(layer, self._data(x.shape, tuple(range(len(x.shape) + 1)), x.tensor), out_axes=axes)


@dataclass
class _Unmerged:
    """A bidirectional recurrent node whose two directions are not merged yet."""

    layer: L.Bidirectional
    label: str
    both: Data  # its output, with the direction axis, as moved so far
    tensor: _Tensor  # the barenet tensor of its (merged) output
    reads: int = 0  # operators that read ``both``
    picked: set[int] = field(default_factory=set)  # directions taken from it
    tips: dict[int, Data] = field(default_factory=dict)  # each direction, as moved so far


class _ShapeView:
    """Stands for a data-path tensor where only its shape is read (``Shape``)."""

    def __init__(self, shape: tuple[Any, ...]) -> None:
        self.shape = shape


def _recurrent_arrays(op: str, w: np.ndarray, r: np.ndarray, b: np.ndarray,
                      reset_after: bool) -> dict[str, np.ndarray]:
    """One direction's ONNX ``W : (gates*units, features)``, ``R : (gates*units, units)`` and
    ``B : (2*gates*units,)`` as barenet's ``kernel``, ``recurrent_kernel`` and ``bias``.

    LSTM blocks go from ONNX's ``i, o, f, c`` to barenet's ``i, f, c, o``; GRU's ``z, r, h`` is barenet's order.
    The input and recurrent biases are summed, except for GRU with ``reset_after``, which keeps them as two rows.
    """
    wb, rb = np.split(b, 2)
    if op == "LSTM":
        order = [0, 2, 3, 1]
        w, r, wb, rb = (_blocks(a, order) for a in (w, r, wb, rb))
    bias = np.stack([wb, rb]) if op == "GRU" and reset_after else wb + rb
    return {"kernel": w.T, "recurrent_kernel": r.T, "bias": bias}


def _blocks(a: np.ndarray, order: list[int]) -> np.ndarray:
    """Reorder the gate blocks of ``a`` along axis 0."""
    parts = np.split(a, len(order), axis=0)
    return np.concatenate([parts[k] for k in order], axis=0)


def _is_zero(x: Any) -> bool:
    if isinstance(x, Filled):
        return bool(x.value == 0)
    return isinstance(x, np.ndarray) and x.dtype != object and not np.any(x)


def _sides(top: int, bottom: int, left: int, right: int) -> tuple[int, int] | Pads:
    """A layer's explicit ``padding``: ``(ph, pw)`` when each axis is symmetric, else per side."""
    return (top, left) if top == bottom and left == right else ((top, bottom), (left, right))
