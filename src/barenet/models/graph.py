"""Networks as graphs: the functional API (``bn.Input``, calling layers on symbolic tensors, ``bn.Model``).

A network that is not a stack (a residual block adding its input to its output, a two-input model, a
layer shared by two branches) is written as in Keras::

    x = bn.Input(shape=(28, 28, 1))
    h = bn.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    y = bn.layers.Conv2D(16, 3, padding="same")(h)
    y = bn.layers.Add()([h, y])
    out = bn.layers.Dense(10, activation="softmax")(bn.layers.Flatten()(y))
    model = bn.Model(x, out, seed=0)

Calling a layer on a :class:`SymbolicTensor` computes nothing: it records a :class:`Node` (the layer and
the tensors it was called on) and returns the symbolic output, whose shape comes from the layer's
``compute_output_shape``. :class:`Model` then orders the nodes (each after the nodes its inputs come from),
builds every layer once with the model's generator and dtype, and runs them in that order.

Backward runs the nodes in reverse order. Two rules make a graph's gradients those of the function it
computes: a tensor read by several nodes receives the sum of their gradients, and a layer called at several
nodes (shared weights) receives the sum of its parameter gradients over those calls. Each call keeps its own
cache (:mod:`barenet.layers.base`), which is what lets one layer take part at several places.
"""

from __future__ import annotations

import collections
import itertools
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from .. import losses as losses_mod
from .. import memory, threads
from .. import metrics as metrics_mod
from .. import optimizers as optimizers_mod
from ..errors import ConfigError, DataError, NotFittedError, ShapeError
from ..layers import Cache, Layer, check_contract, layer_class
from ..layers.activations import Activation
from ..layers.base import weights_of
from ..rng import Seed, make_rng
from . import masking, streams, training, validation
from .keras_api import _readable_bytes
from .sequential import Sequential, output_loss

_counter = itertools.count()


class SymbolicTensor:
    """The array that will flow along one edge of a graph: its sample shape, and the node that makes it.

    ``shape`` is ``(None, *sample_shape)``, the batch axis unknown (Keras's convention).
    """

    def __init__(self, sample_shape: tuple[int, ...], node: Node, *, integer: bool = False,
                 mask_origin: Layer | None = None) -> None:
        self.sample_shape = tuple(int(d) for d in sample_shape)
        self.node = node
        #: Whether the values are integer ids (an ``Input(dtype="int64")``, or what an id-taking layer reads).
        self.integer = integer
        #: The layer whose padding mask the values carry (an ``Embedding(mask_zero=True)``), or None
        #: (:mod:`barenet.models.masking`).
        self.mask_origin = mask_origin
        self.key = next(_counter)

    @property
    def masked(self) -> bool:
        """Whether the values carry a padding mask ``(batch, time)``."""
        return self.mask_origin is not None

    @property
    def shape(self) -> tuple[int | None, ...]:
        return (None, *self.sample_shape)

    @property
    def name(self) -> str:
        return self.node.name

    def __repr__(self) -> str:
        return f"<SymbolicTensor shape={self.shape} from {self.node.name!r}>"


class Node:
    """One call of a layer in a graph (or an input, when ``layer`` is None)."""

    def __init__(self, layer: Layer | None, inputs: list[SymbolicTensor], *, single: bool, name: str,
                 options: dict[str, Any] | None = None) -> None:
        self.layer = layer
        self.inputs = inputs
        #: Keyword arguments of the call other than tensors (``use_causal_mask=True``), JSON values.
        self.options = dict(options or {})
        #: Whether the layer was called on one tensor (it then gets an array, else a list of arrays).
        self.single = single
        self.name = name
        self.output: SymbolicTensor | None = None


def Input(shape: Sequence[int], *, name: str | None = None, dtype: str | None = None) -> SymbolicTensor:
    """A model input: a symbolic tensor of samples of ``shape`` (batch axis excluded).

    Parameters
    ----------
    shape : tuple of int
        One sample's shape: ``(features,)``, ``(height, width, channels)``, ``(time, features)``.
    name : str, optional
        The input's name, the key of its array when inputs are given as a dict.
    dtype : str, optional
        ``"int64"`` (or any integer type) for token ids; by default the model's float dtype.
    """
    try:
        sample = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ConfigError(f"Input shape must be a tuple of positive integers, got {shape!r}") from None
    if not sample or min(sample) < 1:
        raise ConfigError(f"Input shape must be a non-empty tuple of positive integers, got {shape!r}")
    integer = dtype is not None and np.dtype(dtype).kind in "iu"
    if dtype is not None and not integer and np.dtype(dtype).kind != "f":
        raise ConfigError(f"Input dtype must be a float or integer type, got {dtype!r}")
    node = Node(None, [], single=True, name=name or f"input_{next(_counter)}")
    node.output = SymbolicTensor(sample, node, integer=integer)
    return node.output


def is_symbolic(value: Any) -> bool:
    """Whether ``value`` is a symbolic tensor or a non-empty list/tuple of them."""
    if isinstance(value, SymbolicTensor):
        return True
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, SymbolicTensor) for v in value)


def call_layer(layer: Layer, inputs: SymbolicTensor | Sequence[SymbolicTensor],
               options: dict[str, Any] | None = None) -> SymbolicTensor:
    """Record ``layer(inputs)`` on symbolic tensors and return the symbolic output (what ``Layer.__call__``
    does with symbolic arguments). ``options`` are the call's other keyword arguments, handed to the layer's
    ``forward`` and ``compute_output_shape`` at every run.

    A call of a layer on its own input (:meth:`~barenet.layers.Layer.takes_own_input`, every call by default)
    must match the shape the layer is built (or declared) for; a call with options that take another input
    (``Embedding``'s ``reverse=True``) is checked by the layer's ``compute_output_shape`` instead."""
    check_contract(layer)
    single = isinstance(inputs, SymbolicTensor)
    tensors = [inputs] if single else list(inputs)
    shapes = tensors[0].sample_shape if single else [t.sample_shape for t in tensors]
    if not layer.takes_own_input(options or {}):
        out_shape = layer.compute_output_shape(shapes, **(options or {}))
    elif layer.built:
        expected = layer.input_shape
        if (tuple(expected) if single else [tuple(s) for s in expected]) != shapes:
            raise ShapeError(f"{layer.describe()} was built for inputs {expected}, called on {shapes}; a shared "
                             f"layer takes inputs of one shape")
        out_shape = layer.output_shape
    else:
        if single and layer.input_shape is not None and tuple(layer.input_shape) != shapes:
            raise ShapeError(f"{layer.describe()} was declared with input shape {layer.input_shape}, called on "
                             f"a tensor of shape {(None, *shapes)}")
        out_shape = layer.compute_output_shape(shapes, **(options or {}))
    origin = masking.output_mask_origin(layer, [t.sample_shape for t in tensors], [t.integer for t in tensors],
                                        [t.mask_origin for t in tensors], single, tuple(out_shape), options)
    node = Node(layer, tensors, single=single, name=layer.name or _snake(type(layer).__name__), options=options)
    node.output = SymbolicTensor(out_shape, node, mask_origin=origin)
    return node.output


def _snake(name: str) -> str:
    """A class name as Keras names its layers: ``Conv2D`` -> ``conv2d``, ``ReLU`` -> ``re_lu``."""
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", name)).lower()


class Arrays:
    """Several arrays with the same number of rows (a multi-input model's inputs, a multi-output model's
    targets), sliced together: ``len(a)`` rows, ``a[idx]`` the same rows of each."""

    def __init__(self, arrays: Sequence[np.ndarray]) -> None:
        self.arrays = list(arrays)

    def __len__(self) -> int:
        return len(self.arrays[0])

    def __getitem__(self, idx: Any) -> Arrays:
        return Arrays([a[idx] for a in self.arrays])

    def __setitem__(self, idx: Any, values: Arrays) -> None:
        for a, v in zip(self.arrays, values.arrays, strict=True):
            a[idx] = v

    def __iter__(self):
        return iter(self.arrays)


class _InputSpec:
    """What the input checks need to know of one model input (see :func:`validation.check_inputs`)."""

    def __init__(self, tensor: SymbolicTensor, readers: list[Layer]) -> None:
        self.name = tensor.name
        self.input_shape = tensor.sample_shape
        self.takes_indices = tensor.integer or any(layer.takes_indices for layer in readers)

    def describe(self) -> str:
        return f"input {self.name!r}"


class Model(Sequential):
    """A network given by its inputs and outputs: any directed acyclic graph of layer calls.

    Parameters
    ----------
    inputs : SymbolicTensor or list of them
        Made by :func:`Input`.
    outputs : SymbolicTensor or list of them
        Made by calling layers on ``inputs`` (and on what those calls returned).
    name : str, optional
    seed : int, optional
        Seeds the model's one random generator (initial weights, shuffling, dropout), as for Sequential.
    dtype : {"float32", "float64"}

    Data is given as one array per input (a list in the order of ``inputs``, or a dict keyed by input name);
    with one input, an array. Targets likewise, one per output (a dict is keyed by the name of the layer
    that makes the output). ``predict`` returns an array, or a list of arrays for several outputs.

    Weights are keyed ``"<layer name>.<parameter>"`` in :meth:`named_weights`; layers without a name get
    one from their class (``dense``, ``dense_1`` ...). The training loop, callbacks, history, saving and
    loading are those of :class:`~barenet.Sequential`, which is the special case of one chain.
    """

    def __init__(self, inputs: SymbolicTensor | Sequence[SymbolicTensor],
                 outputs: SymbolicTensor | Sequence[SymbolicTensor], *, name: str | None = None, seed: Seed = None,
                 dtype: Any = "float32") -> None:
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype.name!r}")
        self.single_input = isinstance(inputs, SymbolicTensor)
        self.single_output = isinstance(outputs, SymbolicTensor)
        self.inputs = [inputs] if self.single_input else list(inputs)
        self.outputs = [outputs] if self.single_output else list(outputs)
        for what, tensors in (("inputs", self.inputs), ("outputs", self.outputs)):
            if not tensors or not all(isinstance(t, SymbolicTensor) for t in tensors):
                raise ConfigError(f"Model {what} must be symbolic tensors (from bn.Input and layer calls), got "
                                  f"{[type(t).__name__ for t in tensors]}")
        for t in self.inputs:
            if t.node.layer is not None:
                raise ConfigError(f"Model inputs must come from bn.Input; {t!r} is a layer's output")
        self.dtype = dtype
        self.seed = seed if isinstance(seed, (int, np.integer)) else None
        self.rng = make_rng(seed)
        self.name = name
        self.loss: losses_mod.Loss | None = None
        self.optimizer: optimizers_mod.Optimizer | None = None
        self.metric_names: list[str] = []
        self.output_losses: list[losses_mod.Loss] | None = None
        self.loss_weights: list[float] = [1.0] * len(self.outputs)
        self.output_metrics: list[list[str]] = [[] for _ in self.outputs]
        self.stop_training = False
        self.metadata: dict[str, Any] = {}
        self.nodes = self._order()
        self.layers = list(dict.fromkeys(node.layer for node in self.nodes))
        self._name_layers()
        self.built = False
        self._build()

    # ----------------------------------------------------------------- construction
    def _order(self) -> list[Node]:
        """The layer nodes between inputs and outputs, each after the nodes it reads from."""
        given = {id(t.node) for t in self.inputs}
        if len(given) != len(self.inputs):
            raise ConfigError("Model inputs name the same Input twice")

        def is_input(node: Node) -> bool:
            if node.layer is None and id(node) not in given:
                raise ConfigError(f"the outputs depend on input {node.name!r}, which is not among the "
                                  f"Model's inputs {[t.name for t in self.inputs]}")
            return node.layer is None

        order = call_order([t.node for t in self.outputs], lambda node: [t.node for t in node.inputs], is_input, id)
        used = {id(t.node) for node in order for t in node.inputs} | {id(t.node) for t in self.outputs}
        unused = [t.name for t in self.inputs if id(t.node) not in used]
        if unused:
            raise ConfigError(f"Model inputs {unused} are not used by any output")
        return order

    def _name_layers(self) -> None:
        """Give each layer without a name one from its class; refuse two layers of one name."""
        taken: dict[str, Layer] = {}
        for layer in self.layers:
            if layer.name is not None:
                if layer.name in taken and taken[layer.name] is not layer:
                    raise ConfigError(f"two layers of this model are named {layer.name!r}; names must be unique")
                taken[layer.name] = layer
        tried: dict[str, int] = {}  # per class name, the suffixes below this are taken
        for layer in self.layers:
            if layer.name is None:
                base = _snake(type(layer).__name__)
                k = tried.get(base, 0)
                while (f"{base}_{k}" if k else base) in taken:
                    k += 1
                tried[base] = k + 1
                layer.name = f"{base}_{k}" if k else base
                taken[layer.name] = layer
        input_names = [t.name for t in self.inputs]
        if len(set(input_names)) != len(input_names):
            raise ConfigError(f"Model inputs have repeated names {input_names}; give each Input its own name")

    def _build(self) -> None:
        """Build every layer once, in graph order, from its first call on its own input, and check that the
        layer's other calls on its own input have that shape (calls taking another input, as ``Embedding``'s
        ``reverse=True``, were checked when recorded)."""
        for layer in self.layers:
            check_contract(layer)
        own = [node for node in self.nodes if node.layer.takes_own_input(node.options)]
        for node in own:
            layer = node.layer
            shapes = node.inputs[0].sample_shape if node.single else [t.sample_shape for t in node.inputs]
            if not layer.built:
                layer.build(shapes, self.rng, self.dtype)
            elif _shape_list(shapes) != _shape_list(layer.input_shape):
                raise ShapeError(f"{layer.describe()} was built for inputs {layer.input_shape}, called on {shapes}; "
                                 f"a shared layer takes inputs of one shape")
            if isinstance(layer, Model) and layer.dtype != self.dtype:
                raise ConfigError(f"nested model {layer.name!r} computes in {layer.dtype.name}, this model in "
                                  f"{self.dtype.name}; build both with one dtype")
        for layer in self.layers:
            if not layer.built:
                raise ConfigError(f"{layer.describe()} is called only with options that take another input than "
                                  f"its own ({[n.options for n in self.nodes if n.layer is layer][0]}), so nothing "
                                  f"builds it; call it on its own input too (an Embedding on token ids), or build it")
        twice = repeated_weight_name((layer.name, list(_named_arrays(layer))) for layer in self.layers)
        if twice is not None:
            raise ConfigError(f"two weights of this model would be named {twice!r} (a layer's name, a dot, the "
                              f"weight's name): a layer's name is another's followed by a dot; rename one of them")
        self.calls = collections.Counter(node.layer for node in self.nodes)
        readers: dict[int, list[Layer]] = {}  # per tensor, the layers that read it as their own input
        for node in own:
            for t in node.inputs:
                readers.setdefault(t.key, []).append(node.layer)
        self.input_specs = [_InputSpec(t, readers.get(t.key, [])) for t in self.inputs]
        self.input_shape = self.inputs[0].sample_shape if self.single_input else [t.sample_shape for t in
                                                                                  self.inputs]
        self.output_shape = self.outputs[0].sample_shape if self.single_output else [t.sample_shape for t in
                                                                                     self.outputs]
        self._pack_parameters()
        self.built = True
        # The last reader of each tensor, so that inference frees every activation as soon as it is read.
        self._last_read = {}
        for k, node in enumerate(self.nodes):
            for t in node.inputs:
                self._last_read[t.key] = k

    def add(self, layer: Layer) -> None:
        raise ConfigError("a functional Model is fixed by its inputs and outputs; call the layer on a tensor "
                          "and build a new Model from the result")

    def build(self, input_shape: Any = None) -> None:
        """A functional model is built when it is made; this checks ``input_shape`` against it."""
        if input_shape is not None and _shape_list(input_shape) != _shape_list(self.input_shape):
            raise ShapeError(f"the model is built for inputs {self.input_shape}, not {input_shape}")

    def build_for(self, X: Any) -> None:
        return None

    @property
    def output_names(self) -> list[str]:
        """The names of the layers making the outputs (the keys of targets and losses given as dicts)."""
        return [t.node.name if t.node.layer is None else t.node.layer.name for t in self.outputs]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    # ----------------------------------------------------------------- compile
    def compile(self, loss: Any = "mean_squared_error", optimizer: Any = "adam", metrics: Any = None,
                loss_weights: Any = None) -> None:
        """As :meth:`Sequential.compile`, with one loss (and metrics) per output for several outputs.

        ``loss`` is one loss for every output, a list in the order of ``outputs`` or a dict keyed by output
        name; ``loss_weights`` (list or dict, default 1 each) weigh them in the total loss; ``metrics`` is one
        list for every output, or a list of lists or a dict of lists.
        """
        names = self.output_names
        losses = [losses_mod.get(item) for item in self._per_output(loss, "loss")]
        opt = optimizers_mod.get(optimizer)
        weights = [1.0] * len(names) if loss_weights is None else [
            float(w) for w in self._per_output(loss_weights, "loss_weights", broadcast=False)]
        if any(not np.isfinite(w) or w < 0 for w in weights):
            raise ConfigError(f"loss_weights must be finite and >= 0, got {weights}")
        if metrics is None or (isinstance(metrics, (list, tuple)) and all(isinstance(m, str) for m in metrics)):
            per_output = [[str(m) for m in (metrics or [])] for _ in names]
        else:
            per_output = [[str(m) for m in (ms or [])] for ms in self._per_output(metrics, "metrics",
                                                                                   broadcast=False)]
        for ms in per_output:
            for m in ms:
                metrics_mod.get(m)
        self.output_losses, self.loss_weights, self.output_metrics, self.optimizer = losses, weights, per_output, opt
        self.loss = losses[0] if len(losses) == 1 else None
        self.metric_names = per_output[0] if len(names) == 1 else []

    def _per_output(self, value: Any, what: str, broadcast: bool = True) -> list[Any]:
        names = self.output_names
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(names))
            missing = [n for n in names if n not in value]
            if unknown or missing:
                raise ConfigError(f"{what} keys must be the output names {names}; got {sorted(value)}")
            return [value[n] for n in names]
        if isinstance(value, (list, tuple)) and not broadcast or isinstance(value, (list, tuple)) and len(
                names) > 1:
            if len(value) != len(names):
                raise ConfigError(f"{what} has {len(value)} entries for {len(names)} outputs {names}")
            return list(value)
        if not broadcast and len(names) > 1:
            raise ConfigError(f"{what} must be a list or dict with one entry per output {names}")
        return [value] * len(names) if not (isinstance(value, (list, tuple)) and len(value) == 1) else list(value)

    def require_compiled(self, what: str) -> None:
        if self.output_losses is None or self.optimizer is None:
            raise NotFittedError(f"{what} needs a compiled model; call compile(loss=..., optimizer=...) first")

    # ----------------------------------------------------------------- data
    def _per_input(self, X: Any, what: str) -> list[Any]:
        names = self.input_names
        if isinstance(X, Mapping):
            missing = [n for n in names if n not in X]
            unknown = sorted(set(X) - set(names))
            if missing or unknown:
                raise DataError(f"{what} keys must be the input names {names}; got {sorted(X)}")
            return [X[n] for n in names]
        if isinstance(X, Arrays):
            return X.arrays
        if len(names) == 1:
            return [X]
        if not isinstance(X, (list, tuple)) or len(X) != len(names):
            raise DataError(f"{what} must be a list of {len(names)} arrays (inputs {names}) or a dict keyed by "
                            f"input name; got {type(X).__name__}")
        return list(X)

    def check_inputs(self, X: Any, what: str = "X", *, allow_empty: bool = False) -> Any:
        arrays = [validation.check_inputs(x, dtype=self.dtype, first_layer=spec, input_shape=spec.input_shape,
                                          what=what if len(self.inputs) == 1 else f"{what}[{spec.name!r}]",
                                          allow_empty=allow_empty)
                  for x, spec in zip(self._per_input(X, what), self.input_specs, strict=True)]
        if len({len(a) for a in arrays}) > 1:
            raise ShapeError(f"{what} arrays have different numbers of samples {[len(a) for a in arrays]}")
        return arrays[0] if len(arrays) == 1 else Arrays(arrays)

    def check_targets(self, y: Any, n: int, what: str = "y") -> Any:
        self.require_compiled("checking targets")
        names = self.output_names
        if isinstance(y, Mapping):
            parts = [y[k] for k in names] if set(y) == set(names) else None
            if parts is None:
                raise DataError(f"{what} keys must be the output names {names}; got {sorted(y)}")
        elif len(names) == 1:
            parts = [y]
        elif isinstance(y, (list, tuple)) and len(y) == len(names):
            parts = list(y)
        else:
            raise DataError(f"{what} must be a list of {len(names)} arrays (outputs {names}) or a dict keyed by "
                            f"output name")
        checked = [validation.check_targets(t, n, loss=loss, output_shape=t_out.sample_shape, dtype=self.dtype,
                                            what=what if len(names) == 1 else f"{what}[{name!r}]")
                   for t, loss, t_out, name in zip(parts, self.output_losses, self.outputs, names, strict=True)]
        return checked[0] if len(checked) == 1 else Arrays(checked)

    @property
    def task(self) -> str:
        if self.loss is None:
            if self.output_losses is None:
                raise NotFittedError("the model is not compiled; call compile(loss=..., optimizer=...) first")
            raise ConfigError("a model with several outputs has one task per output")
        return super().task

    def metric_logs(self, y_true: Any, y_pred: Any, prefix: str = "", *, mask: Any = None) -> dict[str, float]:
        if len(self.outputs) == 1:
            return super().metric_logs(y_true, y_pred, prefix, mask=mask)
        logs: dict[str, float] = {}
        masks = list(mask) if mask is not None else [None] * len(self.outputs)
        for name, loss, metrics, t, p, out, m in zip(self.output_names, self.output_losses, self.output_metrics,
                                                     y_true, y_pred, self.outputs, masks, strict=True):
            logs[f"{prefix}{name}_loss"] = float(output_loss(loss, p, t, None, m, fused=False, need_grad=False)[0])
            task = _task(loss, out.sample_shape)
            t, p = masking.real_steps(t, p, m)
            for metric in metrics:
                labels = p.argmax(axis=-1) if task == "multiclass" else p
                logs[f"{prefix}{name}_{metric}"] = metrics_mod.get(metric)(t, labels, task,
                                                                          n_classes=out.sample_shape[-1])
        return logs

    def mask_buffer(self, n: int) -> Any:
        """Arrays to collect ``n`` samples' output padding masks for the metrics (``None`` for an output without
        a mask; a list for several outputs), or ``None`` when no output carries a mask."""
        if not any(t.masked for t in self.outputs):
            return None
        buffers = [np.zeros((n, t.sample_shape[0]), dtype=bool) if t.masked else None for t in self.outputs]
        return buffers[0] if len(buffers) == 1 else buffers

    def check_sample_weight(self, sample_weight: Any, n: int) -> Any:
        """One weight per sample for every output, or, for several outputs, a list or dict (by output name)
        of per-output weights (``None`` entries weigh 1) as Keras takes them."""
        names = self.output_names
        if len(names) == 1 or sample_weight is None or not isinstance(sample_weight, (list, tuple, Mapping)):
            return validation.check_sample_weight(sample_weight, n, self.dtype)
        parts = self._per_output(sample_weight, "sample_weight", broadcast=False)
        return Arrays([np.ones(n, self.dtype) if part is None else validation.check_sample_weight(part, n, self.dtype)
                       for part in parts])

    def fit(self, X: Any, y: Any = None, **kwargs: Any):
        """As :meth:`Sequential.fit`; ``class_weight`` only for a model with one output (as in Keras), per-output
        ``sample_weight`` as a list or a dict keyed by output name."""
        if kwargs.get("class_weight") and len(self.outputs) > 1:
            raise ConfigError("class_weight applies to a model with one output, as in Keras; weigh each output's "
                              "samples with sample_weight={output name: weights}")
        return super().fit(X, y, **kwargs)

    @property
    def records_predictions(self) -> bool:
        return bool(self.metric_names) or len(self.outputs) > 1

    def running_metrics(self) -> Any:
        if len(self.outputs) == 1:
            return super().running_metrics()
        return _RunningOutputs(self)

    def prediction_buffer(self, n: int) -> tuple[Any, bool]:
        if len(self.outputs) == 1:
            return super().prediction_buffer(n)
        return Arrays([np.empty((n, *t.sample_shape), dtype=self.dtype) for t in self.outputs]), False

    # ----------------------------------------------------------------- forward / backward
    def _fused_outputs(self) -> list[bool]:
        """Per output: whether its loss takes the logits (the final sigmoid/softmax fused with the loss)."""
        if self.output_losses is None:
            return [False] * len(self.outputs)
        fused = []
        reads = {}
        for node in self.nodes:
            for t in node.inputs:
                reads[t.key] = reads.get(t.key, 0) + 1
        for t, loss in zip(self.outputs, self.output_losses, strict=True):
            layer = t.node.layer
            act = layer if isinstance(layer, Activation) else getattr(layer, "activation", None)
            fused.append(layer is not None and loss.fuses_with is not None and act is not None
                         and isinstance(act, Activation) and act.kind == loss.fuses_with
                         and not getattr(loss, "from_logits", False) and reads.get(t.key, 0) == 0
                         and sum(o is t for o in self.outputs) == 1 and self.calls[layer] == 1)
        return fused

    def forward(self, x: Any, *, training: bool = False, logits: Any = False, cache: Cache | None = None) -> Any:
        """Run the graph on checked inputs (an array, or a list/:class:`Arrays` for several inputs).

        ``logits`` (a bool, or one per output) stops those outputs before their final activation. With a
        ``cache`` (one child per node) :meth:`backward` can follow; without one each activation is freed
        once its last reader has run.
        """
        return self._run(x, training=training, logits=logits, cache=cache)[0]

    def _run(self, x: Any, *, training: bool, logits: Any, cache: Cache | None) -> tuple[Any, list[Any]]:
        """:meth:`forward`'s outputs and the outputs' padding masks (one per output, ``None`` where there is
        none); the masks of the call live in its local ``masks`` (:mod:`barenet.models.masking`)."""
        xs = [x] if len(self.inputs) == 1 and not isinstance(x, (list, Arrays)) else list(x)
        flags = [bool(logits)] * len(self.outputs) if isinstance(logits, (bool, np.bool_)) else list(logits)
        stop = {t.key for t, f in zip(self.outputs, flags, strict=True) if f}
        values = {t.key: a for t, a in zip(self.inputs, xs, strict=True)}
        masks: dict[int, np.ndarray] = {}
        keep = {t.key for t in self.outputs}
        for k, node in enumerate(self.nodes):
            args = [values[t.key] for t in node.inputs]
            arg = args[0] if node.single else args
            options, mask = node.options, None
            if any(t.masked for t in node.inputs):
                mask = [masks[t.key] if t.masked else None for t in node.inputs]
                mask = mask[0] if node.single else mask
                if masking.takes_mask(node.layer):
                    options = {**options, "mask": mask}
            sub = None
            if cache is not None:
                wants = cache.input_grad or any(t.node.layer is not None for t in node.inputs)
                sub = cache.child(str(k), input_grad=wants)
                keys = [t.key for t in node.inputs]
                if len(set(keys)) < len(keys):  # backward's gradients of one tensor are added up (backward)
                    sub.shared_inputs = tuple(keys.index(key) for key in keys)
            layer = node.layer
            with threads.layer(layer):  # split the batch, or leave a layer's products to BLAS's threads
                if node.output.key in stop:
                    y = arg if isinstance(layer, Activation) else layer.forward_logits(arg, training=training,
                                                                                       cache=sub)
                else:
                    y = layer.forward(arg, training=training, cache=sub, **options)
            if node.output.masked:
                masks[node.output.key] = masking.call_mask(layer, arg, mask, node.options)
            values[node.output.key] = y
            if cache is None:
                for t in node.inputs:
                    if self._last_read.get(t.key) == k and t.key not in keep:
                        values.pop(t.key, None)
        if cache is not None:
            cache["logits"] = flags
        outs = [values[t.key] for t in self.outputs]
        return outs[0] if self.single_output else outs, [masks.get(t.key) for t in self.outputs]

    def backward(self, grad: Any, cache: Cache) -> Any:
        """Backpropagate dLoss/dOutputs (one per output; dLoss/dLogits where the forward call stopped at the
        logits) through the graph, filling every layer's ``grads``; returns dLoss/dInputs (an array, or a list
        for several inputs; ``None`` unless ``cache.input_grad``)."""
        grads_in = [grad] if self.single_output else list(grad)
        flags = cache["logits"]
        pending: dict[int, np.ndarray] = {}
        for t, g in zip(self.outputs, grads_in, strict=True):
            pending[t.key] = pending[t.key] + g if t.key in pending else g
        stops = {t.key for t, f in zip(self.outputs, flags, strict=True) if f}
        summed: dict[Layer, dict[str, np.ndarray]] = {}
        reached: set[int] = set()
        for k in range(len(self.nodes) - 1, -1, -1):
            node = self.nodes[k]
            g = pending.pop(node.output.key, None)
            if g is None:
                continue
            layer, sub = node.layer, cache[str(k)]
            with threads.layer(layer):
                if node.output.key in stops:
                    dx = g if isinstance(layer, Activation) else layer.backward_logits(g, sub)
                else:
                    dx = layer.backward(g, sub)
            if self.calls[layer] > 1:
                if layer in summed:
                    for name, total in summed[layer].items():
                        total += layer.grads[name]
                else:
                    summed[layer] = {name: g_.copy() for name, g_ in layer.grads.items()}
            reached.add(id(layer))
            if not sub.input_grad or dx is None:
                continue
            parts = [dx] if node.single else list(dx)
            for t, d in zip(node.inputs, parts, strict=True):
                if d is None or (t.node.layer is None and not cache.input_grad):
                    continue
                pending[t.key] = pending[t.key] + d if t.key in pending else d
        for layer, totals in summed.items():
            for name, total in totals.items():
                layer.grads[name][...] = total
        for layer in self.layers:  # a layer no loss depends on gets zero gradients, never stale ones
            if id(layer) not in reached:
                for g in layer.grads.values():
                    g[...] = 0
        if not cache.input_grad:
            return None
        dxs = [pending.get(t.key) for t in self.inputs]
        dxs = [np.zeros((len(g_), *t.sample_shape), self.dtype) if d is None else d
               for d, t, g_ in zip(dxs, self.inputs, itertools.repeat(grads_in[0]), strict=False)]
        return dxs[0] if self.single_input else dxs

    def _loss_and_grad(self, x: Any, y: Any, w: np.ndarray | None, training: bool, need_grad: bool,
                       input_grad: bool = False) -> tuple[float, Any, Any, Any]:
        fused = self._fused_outputs()
        cache = Cache(input_grad=input_grad) if need_grad else None
        outs, masks = self._run(x, training=training, logits=fused, cache=cache)
        outs = [outs] if self.single_output else outs
        ys = [y] if len(self.outputs) == 1 else list(y)
        total, preds, grads = 0.0, [], []
        ws = list(w) if isinstance(w, Arrays) else [w] * len(outs)
        for out, t, loss, lw, f, w, m in zip(outs, ys, self.output_losses, self.loss_weights, fused, ws, masks,
                                             strict=True):
            value, grad, y_pred = output_loss(loss, out, t, w, m, fused=f, need_grad=need_grad)
            total += lw * value
            preds.append(y_pred)
            if need_grad:
                grads.append(grad * grad.dtype.type(lw) if lw != 1 else grad)
        grad_input = self.backward(grads[0] if self.single_output else grads, cache) if need_grad else None
        y_pred = preds[0] if len(preds) == 1 else Arrays(preds)
        return total + self._penalty(need_grad), y_pred, grad_input, masks[0] if len(masks) == 1 else masks

    # ----------------------------------------------------------------- inference
    def predict(self, X: Any, *, batch_size: int | None = None, verbose: int = 0, steps: int | None = None) -> Any:
        """Outputs for ``X`` in inference mode: an array, or a list of arrays for several outputs
        (``batch_size``, ``verbose``, ``steps`` and streams as for :meth:`Sequential.predict`)."""
        from .callbacks import StepProgress

        verbose = training.check_verbose(verbose)
        bs = validation.check_count(batch_size, "batch_size", allow_none=True) or training.PREDICT_BATCH
        steps = validation.check_count(steps, "steps", allow_none=True)
        empty = [np.empty((0, *t.sample_shape), dtype=self.dtype) for t in self.outputs]
        if streams.is_stream(X):
            feed = streams.Feed(X, steps=steps, batch_size=bs)
            try:
                progress = StepProgress("predict", feed.known_steps, verbose) if verbose else None
                parts = training.predict_feed(self, feed, progress=progress)
            finally:
                feed.close()
            if not parts:
                return empty[0] if self.single_output else empty
        else:
            X = self.check_inputs(X, allow_empty=True)
            n = len(X)
            if n == 0:
                return empty[0] if self.single_output else empty
            if n == 1 and not verbose:  # one row splits nowhere: no engine block (see barenet.threads.parts)
                return self.forward(X, training=False)
            steps = -(-n // bs)
            progress = StepProgress("predict", steps, verbose) if verbose else None
            parts = []
            memory.keep_freed_memory(steps)
            for i in range(0, n, bs):
                with self._engine():
                    parts.append(self.forward(X[i:i + bs], training=False))
                if progress is not None:
                    progress.update(len(parts))
            if progress is not None:
                progress.end()
        if self.single_output:
            return np.concatenate(parts) if len(parts) > 1 else parts[0]
        return [np.concatenate([p[j] for p in parts]) if len(parts) > 1 else parts[0][j]
                for j in range(len(self.outputs))]

    def compute_gradients(self, X: Any, y: Any, *, sample_weight: Any = None, training: bool = True):
        """As :meth:`Sequential.compute_gradients`; ``inputs`` is a list for several inputs."""
        from .sequential import Gradients

        self.require_compiled("compute_gradients")
        X = self.check_inputs(X)
        y = self.check_targets(y, len(X))
        w = self.check_sample_weight(sample_weight, len(X))
        with self._engine():
            value, _, grad_input, _ = self._loss_and_grad(X, y, w, training=training, need_grad=True,
                                                          input_grad=True)
        if grad_input is not None:
            parts = [grad_input] if self.single_input else grad_input
            parts = [None if spec.takes_indices else g for spec, g in zip(self.input_specs, parts, strict=True)]
            grad_input = parts[0] if self.single_input else parts
        return Gradients(value, {k: g.copy() for k, g in self.gradients().items()}, grad_input)

    # ----------------------------------------------------------------- names and description
    def named_weights(self) -> dict[str, np.ndarray]:
        """Copies of all weights and buffers keyed ``"<layer name>.<name>"`` (nested models:
        ``"<model>.<layer>.<name>"``), in :meth:`get_weights` order."""
        return {f"{layer.name}.{name}": value.copy() for layer in self.layers
                for name, value in _named_arrays(layer).items()}

    def _set_named_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        stores = {f"{layer.name}.{name}": array for layer in self.layers
                  for name, array in _named_arrays(layer).items()}
        unknown = sorted(set(weights) - set(stores))
        if unknown:
            raise ShapeError(f"set_weights got unknown names {unknown[:5]}; this model has {list(stores)[:8]}...")
        for key, value in weights.items():
            value = np.asarray(value)
            if value.shape != stores[key].shape:
                raise ShapeError(f"weight {key!r} has shape {stores[key].shape}, got {value.shape}")
        for key, value in weights.items():
            stores[key][...] = value

    def summary(self, print_fn: Any = print) -> str:
        """Print (and return) a table of layer calls: output shape, parameters and what each is connected to; a
        call with options shows them beside the layer's type (``embedding (Embedding, reverse=True)``), and a
        layer called several times counts its parameters at its first call."""
        rows = [("Layer (type)", "Output shape", "Params", "Connected to")]
        counted: set[int] = set()
        for t in self.inputs:
            rows.append((f"{t.name} (Input)", str(t.shape).replace("None", "None"), "0", ""))
        for node in self.nodes:
            layer = node.layer
            params = 0 if id(layer) in counted else sum(int(w.size) for w in weights_of(layer))
            counted.add(id(layer))
            links = ", ".join(t.name if t.node.layer is None else t.node.layer.name for t in node.inputs)
            kind = ", ".join([type(layer).__name__, *(f"{k}={v!r}" for k, v in node.options.items())])
            rows.append((f"{layer.name} ({kind})", str(node.output.shape), f"{params:,}", links))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        line = "-" * (sum(widths) + 6)
        text = [f"Model: {self.name or 'model'} (dtype {self.dtype.name})", line]
        for j, r in enumerate(rows):
            text.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]}".rstrip())
            if j == 0:
                text.append(line)
        trainable = sum(int(w.size) for w in self.trainable_weights)
        frozen = sum(int(w.size) for w in self.non_trainable_weights)
        size = self.dtype.itemsize
        text += [line, f"Total params: {trainable + frozen:,} ({_readable_bytes((trainable + frozen) * size)})",
                 f"Trainable params: {trainable:,} ({_readable_bytes(trainable * size)})",
                 f"Non-trainable params: {frozen:,} ({_readable_bytes(frozen * size)})"]
        out = "\n".join(text)
        if print_fn is not None:
            print_fn(out)
        return out

    def __repr__(self) -> str:
        return (f"Model(inputs={self.input_names}, outputs={self.output_names}, layers={len(self.layers)}, "
                f"dtype={self.dtype.name!r})")

    # ----------------------------------------------------------------- config
    def get_config(self) -> dict[str, Any]:
        """The graph as JSON-serializable data: layers (by index), inputs, the calls in order, the outputs."""
        index = {id(layer): i for i, layer in enumerate(self.layers)}
        source = {t.key: ["input", j] for j, t in enumerate(self.inputs)}
        source.update({node.output.key: ["node", k] for k, node in enumerate(self.nodes)})
        return {
            "name": self.name,
            "dtype": self.dtype.name,
            "seed": self.seed,
            "layers": [{"class": type(layer).__name__, "config": layer.get_config()} for layer in self.layers],
            "inputs": [{"name": t.name, "shape": list(t.sample_shape), "integer": t.integer} for t in self.inputs],
            "nodes": [{"layer": index[id(node.layer)], "inputs": [source[t.key] for t in node.inputs],
                       "single": node.single, **({"options": node.options} if node.options else {})}
                      for node in self.nodes],
            "outputs": [source[t.key] for t in self.outputs],
            "single_input": self.single_input,
            "single_output": self.single_output,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Model:
        """Rebuild an (untrained) model from :meth:`get_config`'s output (a nested model's spec has the class
        ``"Model"``).

        The configuration is trusted: it is built as it says. :func:`barenet.load` checks a file's configuration
        before building anything and never comes here.
        """
        layers = [Model.from_config(spec.get("config", {})) if spec["class"] == "Model" else
                  layer_class(spec["class"]).from_config(spec.get("config", {})) for spec in config["layers"]]
        return graph_from_config(config, layers, cls)

    # ----------------------------------------------------------------- a model as a layer
    def __call__(self, inputs: Any, *, training: bool = False) -> Any:
        """On symbolic tensors, a node of an enclosing graph (its weights shared); on arrays, ``predict``."""
        if is_symbolic(inputs):
            return call_layer(self, inputs)
        return self.forward(self.check_inputs(inputs), training=training)

    takes_indices = False
    has_training_mode = True

    @property
    def splits_batch(self) -> bool:
        return any(layer.splits_batch for layer in self.layers)

    @property
    def params(self) -> dict[str, np.ndarray]:
        return {f"{layer.name}.{k}": v for layer in self.layers for k, v in layer.params.items()}

    @property
    def grads(self) -> dict[str, np.ndarray]:
        return {f"{layer.name}.{k}": v for layer in self.layers for k, v in layer.grads.items()}

    @property
    def buffers(self) -> dict[str, np.ndarray]:
        return {f"{layer.name}.{k}": v for layer in self.layers for k, v in layer.buffers.items()}

    def move_parameters(self, place) -> None:
        for layer in self.layers:
            layer.move_parameters(place)

    supports_masking = False

    def compute_mask(self, x: Any, mask: Any = None) -> None:
        """A model called as a layer of another takes and passes on no padding mask: a mask made inside it (an
        ``Embedding(mask_zero=True)``) that reaches its output is refused."""
        origin = next((t.mask_origin for t in self.outputs if t.masked), None)
        if origin is not None:
            raise ConfigError(f"{self.describe()} is called as a layer of another model, but its output carries the "
                              f"padding mask of {origin.describe()}, which a nested model does not "
                              f"pass on; build one model of all the layers")
        return None

    def takes_own_input(self, options: Mapping[str, Any]) -> bool:
        """A model called as a layer takes its inputs, with no call options."""
        if options:
            raise ConfigError(f"{self.describe()} called as a layer takes no call options, got {dict(options)!r:.100}")
        return True

    def compute_output_shape(self, input_shape: Any) -> Any:
        if _shape_list(input_shape) != _shape_list(self.input_shape):
            raise ShapeError(f"model {self.name!r} takes inputs {self.input_shape}, got {input_shape}")
        return self.output_shape

    def describe(self) -> str:
        return f"Model {self.name!r}" if self.name else "Model"


class _RunningOutputs:
    """:meth:`Model.metric_logs` of several outputs, accumulated over the batches of a stream: each output's
    loss (mean over the rows) and metrics."""

    def __init__(self, model: Model) -> None:
        self.names, self.losses = model.output_names, model.output_losses
        self.metrics = [metrics_mod.RunningMetrics(m, _task(loss, out.sample_shape), out.sample_shape[-1])
                        for m, loss, out in zip(model.output_metrics, model.output_losses, model.outputs,
                                                strict=True)]
        self.loss_sums = [0.0] * len(self.names)
        self.counts = [0] * len(self.names)

    def update(self, y_true: Any, y_pred: Any, mask: Any = None) -> None:
        """Add a batch: targets and outputs (lists, one per output) and the outputs' padding masks (a list with
        ``None`` for an output without one, or ``None``); a masked output counts its real steps only."""
        masks = list(mask) if mask is not None else [None] * len(self.names)
        for j, (loss, running, t, p, m) in enumerate(zip(self.losses, self.metrics, y_true, y_pred, masks,
                                                         strict=True)):
            value = float(output_loss(loss, p, t, None, m, fused=False, need_grad=False)[0])
            weight = int(m.sum()) if m is not None else len(t)
            self.loss_sums[j] += value * weight
            self.counts[j] += weight
            running.update(*masking.real_steps(t, p, m))

    def result(self, prefix: str = "") -> dict[str, float]:
        logs: dict[str, float] = {}
        for name, total, count, running in zip(self.names, self.loss_sums, self.counts, self.metrics, strict=True):
            logs[f"{prefix}{name}_loss"] = total / count if count else float("nan")
            logs.update({f"{prefix}{name}_{k}": v for k, v in running.result().items()})
        return logs


def _named_arrays(layer: Any) -> dict[str, np.ndarray]:
    if isinstance(layer, Model):
        return {f"{sub.name}.{k}": v for sub in layer.layers for k, v in _named_arrays(sub).items()}
    return {**layer.params, **layer.buffers}


def _shape_list(shape: Any) -> Any:
    if shape and isinstance(shape[0], (list, tuple)):
        return [tuple(int(d) for d in s) for s in shape]
    return tuple(int(d) for d in shape)


def _task(loss: losses_mod.Loss, output_shape: tuple[int, ...]) -> str:
    if isinstance(loss, losses_mod.CategoricalCrossentropy):
        return "multiclass"
    if isinstance(loss, losses_mod.BinaryCrossentropy):
        return "binary" if int(np.prod(output_shape)) == 1 else "multilabel"
    return "regression"


def repeated_weight_name(layers: Iterable[tuple[str, Iterable[str]]]) -> str | None:
    """The first weight name given twice when each ``(layer name, weight names)`` pair names its weights
    ``"<layer name>.<weight name>"``, or None.

    A layer named ``"p.d"`` beside a nested model ``"p"`` holding a layer ``"d"`` gives two weights
    ``"p.d.kernel"``; :class:`Model` and :func:`barenet.load` refuse that with this one rule.
    """
    seen: set[str] = set()
    for layer, weights in layers:
        for weight in weights:
            name = f"{layer}.{weight}"
            if name in seen:
                return name
            seen.add(name)
    return None


def call_order(outputs: Sequence[Any], reads: Callable[[Any], Sequence[Any]], is_input: Callable[[Any], bool],
               key: Callable[[Any], Hashable]) -> list[Any]:
    """The calls that ``outputs`` depend on, each after the calls it reads from, in the order a model runs them.

    A depth-first walk from the outputs (the first output first, a call's inputs in their order); ``reads(call)``
    gives what a call reads, ``is_input(x)`` whether ``x`` is a model input (not a call), ``key(x)`` an identity.
    :class:`Model` orders its nodes with it, and :func:`barenet.load` orders a file's calls with it before
    building anything, so both agree on which calls a graph needs and on the order of its layers.
    """
    order: list[Any] = []
    state: dict[Hashable, bool] = {}  # False while a call's inputs are being ordered, True once it is placed
    stack: list[tuple[Any, bool]] = [(x, False) for x in reversed(outputs)]
    while stack:
        x, placed = stack.pop()
        if placed:
            state[key(x)] = True
            order.append(x)
            continue
        if key(x) in state:
            continue
        if is_input(x):
            state[key(x)] = True
            continue
        state[key(x)] = False
        stack.append((x, True))
        stack.extend((y, False) for y in reversed(reads(x)) if key(y) not in state)
    return order


def graph_from_config(config: dict[str, Any], layers: list[Layer], cls: type[Model] = Model) -> Model:
    """Re-create the graph of :meth:`Model.get_config` over the given (unbuilt or built) ``layers``.

    Every reference is checked before anything is built: a node may read only the model's inputs and the
    nodes before it (so there is no cycle and no layer reads its own output), every layer index exists.
    """
    inputs = [Input(spec["shape"], name=spec["name"], dtype="int64" if spec.get("integer") else None)
              for spec in config["inputs"]]
    made: list[SymbolicTensor] = []

    def resolve(ref: Any, k: int) -> SymbolicTensor:
        if not (isinstance(ref, list) and len(ref) == 2 and ref[0] in ("input", "node")
                and isinstance(ref[1], int) and not isinstance(ref[1], bool)):
            raise ConfigError(f"node {k} reads {ref!r}; expected ['input', i] or ['node', j]")
        kind, j = ref
        pool = inputs if kind == "input" else made
        if not 0 <= j < len(pool):
            raise ConfigError(f"node {k} reads {kind} {j}, which does not exist (or comes later: a graph has no "
                              f"cycles)")
        return pool[j]

    for k, spec in enumerate(config["nodes"]):
        i = spec["layer"]
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(layers):
            raise ConfigError(f"node {k} calls layer {i!r}; the model has {len(layers)} layers")
        refs = spec["inputs"]
        if not isinstance(refs, list) or not refs:
            raise ConfigError(f"node {k} has no inputs")
        tensors = [resolve(r, k) for r in refs]
        single = bool(spec.get("single", True))
        if single and len(tensors) != 1:
            raise ConfigError(f"node {k} is a single-input call with {len(tensors)} inputs")
        options = spec.get("options") or {}
        if not isinstance(options, dict):
            raise ConfigError(f"node {k} has options {options!r}; expected an object")
        made.append(call_layer(layers[i], tensors[0] if single else tensors, options))
    outputs = [resolve(r, len(made)) for r in config["outputs"]]
    model = cls(inputs[0] if config.get("single_input", True) and len(inputs) == 1 else inputs,
                outputs[0] if config.get("single_output", True) and len(outputs) == 1 else outputs,
                name=config.get("name"), seed=config.get("seed"), dtype=config.get("dtype", "float32"))
    return model

