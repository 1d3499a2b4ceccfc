"""The layer contract.

A layer is a small object with explicit state:

``params``
    trainable arrays by name (``kernel``, ``bias``, ``gamma`` ...);
``grads``
    the same keys and shapes, filled by :meth:`Layer.backward`;
``buffers``
    non-trainable state such as running statistics.

Its life cycle:

1. ``build(input_shape, rng, dtype)`` creates the parameters once the input shape is known.
   ``input_shape`` excludes the batch axis: ``(features,)`` for vectors,
   ``(height, width, channels)`` for images, ``(time, features)`` for sequences.
2. ``forward(x, *, training=False, cache=None)`` maps ``x : (batch, *input_shape)`` to
   ``(batch, *output_shape)``. A call keeps nothing on the layer object: when a backward pass will
   follow, the caller hands in a fresh :class:`Cache` and ``forward`` stores in it what ``backward``
   needs (its input, a mask, batch statistics ...); at inference ``cache`` is ``None`` and nothing is
   kept, so a prediction holds no memory after it returns, and several threads, or several places of
   one network, can call the same layer at once.
3. ``backward(grad, cache)`` takes dLoss/dOutput of the call that filled ``cache`` and returns
   dLoss/dInput (or ``None`` when ``cache.input_grad`` is False, as for a network's first layer).
   It writes the parameter gradients into the ``grads`` arrays in place (the model hands the same
   arrays to the optimizer at every step) and never touches ``params``: only an optimizer updates
   parameters.
4. ``get_config()`` returns the JSON-serializable constructor arguments, so
   ``type(layer).from_config(layer.get_config())`` rebuilds an equivalent (unbuilt) layer.

For example::

    cache = Cache()
    y = layer.forward(x, training=True, cache=cache)
    dx = layer.backward(dy, cache)      # fills layer.grads, returns dLoss/dx

The state a layer does keep between calls is the model's, not a call's: parameters and their
gradients, running statistics updated in training mode (``buffers``), and the random generator of
layers that draw (Dropout). Training one model from two threads at once is therefore not supported;
predicting with it from any number of threads is.

Which parameters are weights: a parameter whose name ends in ``kernel`` (Dense and Conv2D ``kernel``,
the recurrent layers' ``kernel`` and ``recurrent_kernel``, Bidirectional's ``forward_kernel`` ...) or is
``embeddings`` is decayed by AdamW's weight decay and by a layer's L2 penalty; every other parameter
(biases, GRU's ``(2, 3*units)`` bias included, normalization ``gamma``/``beta``) never is. The rule is
:meth:`Layer.decays`, the one place both read it; a custom layer names its parameters to match.

A new layer is a subclass that implements ``build`` (if it has parameters), ``forward``,
``backward``, ``compute_output_shape`` (if it changes the shape) and ``get_config``, and adds
itself to the registry with :func:`register`. A layer written to the contract of barenet 0.1
(``forward(x, *, training)`` caching on ``self``, ``backward(grad)``) is refused when a model is built,
with a message saying what to change (:func:`check_contract`).

Parameters belong to the model once it is built: :class:`~barenet.Sequential` moves every layer's
parameters and gradients into one packed array each (see :meth:`Layer.move_parameters`), so that the
optimizer updates the whole network in one pass. A layer therefore reads its parameters as
``self.params["kernel"]`` and writes gradients into ``self.grads["kernel"]`` at every call, and never
keeps its own reference (``self.w = self.add_param(...)`` would keep training a stale copy; the model
refuses such a layer at build with an error naming the attribute).

A layer whose input is integer indices (:class:`~barenet.layers.Embedding`) sets ``takes_indices``;
as the first layer of a model it then receives ``int64`` arrays instead of inputs cast to the
model's float dtype.

Calls that take another input
-----------------------------
A call in a graph may pass keyword options to the layer (``forward(x, **options)``,
``compute_output_shape(shape, **options)``). Most options leave the input alone, and a layer called at
several places of a graph takes inputs of the one shape it is built for there. A layer one of whose calls
takes another input says so in :meth:`Layer.takes_own_input`: ``Embedding(V, D)`` called as
``emb(h, reverse=True)`` takes float hidden states ``(..., D)`` instead of ids, and projects them onto its
table (weights tied with the lookup). Such a call does not build the layer and is not compared with its
input shape; its ``compute_output_shape(shape, **options)`` checks the shape instead, and its ``backward``
fills the same ``grads``, which the model sums over the layer's calls.

Padding masks
-------------
A sequence batch ``(batch, time, ...)`` may carry a padding mask, a boolean ``(batch, time)`` array, True at
real steps, as in Keras: :class:`~barenet.layers.Embedding` with ``mask_zero=True`` makes one from its ids
(``ids != 0``), and a model hands it along the graph during the same call, never keeping it on a layer.
:meth:`Layer.compute_mask` gives a layer's output mask from its input and input mask (``None``: no mask).
A layer whose ``supports_masking`` is True and that keeps the time axis passes the mask on unchanged (Dense,
the activations, Dropout, LayerNormalization); merges combine their inputs' masks; a layer whose ``forward``
takes a ``mask`` keyword argument receives the mask to use it (MultiHeadAttention masks padded keys and
queries, GlobalAveragePooling1D averages over the real steps). A model refuses, when it is made, a masked
input to any other layer, naming it. The loss and metrics of an output that carries a mask count its real
steps only (:mod:`barenet.models.masking`).

``build`` draws every random parameter through the layer's ``*_initializer`` attributes (callables
``init(shape, fan_in, fan_out, rng, dtype)``) and registers it with :meth:`Layer.add_param`. That lets
:meth:`Layer.dry_build` learn the parameter shapes of an untrusted configuration without allocating
them, and :func:`skip_initialization` build a layer whose weights are about to be read from a file
without drawing them. A layer that allocates its weights any other way overrides ``dry_build``.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from .. import initializers
from ..errors import ConfigError, NotFittedError, ShapeError

_REGISTRY: dict[str, type[Layer]] = {}


#: Name endings of the parameters that weight decay and the L2 penalty apply to (see :meth:`Layer.decays`).
DECAYED_NAME_ENDINGS = ("kernel", "embeddings")


class Cache(dict):
    """What one call of a layer keeps for its backward pass (a dict; the layer chooses the keys).

    The caller makes one per call and hands the same object to ``backward``. ``input_grad`` says whether
    the caller wants dLoss/dInput back (``False`` for a network's first layer, whose input is data);
    a layer made of sublayers gives each its own cache with :meth:`child`.

    ``shared_inputs`` is set by a caller that adds up the gradients of inputs that are one tensor (a graph
    model, for a layer called as ``layer(x, x)``): for each input position, the first position holding the
    same tensor. A layer's ``backward`` may then return the sum of those inputs' gradients at the first
    position and ``None`` at the others (``MultiHeadAttention`` does: one product instead of three).
    """

    def __init__(self, *, input_grad: bool = True) -> None:
        super().__init__()
        self.input_grad = bool(input_grad)
        self.shared_inputs: tuple[int, ...] | None = None

    def child(self, key: str, *, input_grad: bool | None = None) -> Cache:
        """A new cache stored under ``key`` for a sublayer's call (``input_grad`` defaults to this one's)."""
        sub = Cache(input_grad=self.input_grad if input_grad is None else input_grad)
        self[key] = sub
        return sub


def check_contract(layer: Layer) -> None:
    """Raise a :class:`ConfigError` when ``layer``'s class implements the 0.1 contract.

    That contract (``forward(x, *, training)`` keeping the call's arrays on ``self``, ``backward(grad)``)
    let two threads, or two places of one network, overwrite each other's arrays; the message says what
    to change.
    """
    cls = type(layer)
    if _keeps_contract(cls.forward, cls.backward):
        return
    raise ConfigError(
        f"{layer.describe()} implements the old layer contract: forward(x, *, training) keeping the call's "
        f"arrays on self, backward(grad). A layer call now keeps nothing on the layer: write "
        f"forward(self, x, *, training=False, cache=None), storing what backward needs in cache (a dict, "
        f"cache[...] = ...; None at inference, when nothing is to be kept), and backward(self, grad, cache), "
        f"reading it back from cache. See barenet.layers.base"
    )


@functools.cache
def _keeps_contract(forward: Callable[..., Any], backward: Callable[..., Any]) -> bool:
    """Whether ``forward`` takes a ``cache`` and ``backward`` a ``(grad, cache)`` pair.

    Cached by the two functions (a class's methods are the same objects for all its instances, and a
    class whose methods are replaced gets new keys): reading signatures costs tens of microseconds, and
    a model checks every layer it holds.
    """
    params = inspect.signature(forward).parameters
    positional = [p for p in inspect.signature(backward).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_cache = "cache" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    return takes_cache and len(positional) >= 3


@functools.cache
def call_options(forward: Callable[..., Any]) -> frozenset[str] | None:
    """The call options ``forward`` takes: its keyword-only arguments but ``training``, ``cache`` and ``mask``
    (which a model passes itself); ``None`` when it takes any keyword (``**kwargs``)."""
    params = inspect.signature(forward).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return frozenset(p.name for p in params if p.kind is p.KEYWORD_ONLY) - {"training", "cache", "mask"}


def register(cls: type[Layer]) -> type[Layer]:
    """Class decorator: make a layer known to :func:`barenet.load` by its class name."""
    _REGISTRY[cls.__name__] = cls
    return cls


def layer_class(name: str) -> type[Layer]:
    """Look up a registered layer class by name (used when loading saved models)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown layer type {name!r}; known layers: {sorted(_REGISTRY)}") from None


class Layer:
    """Base class of every layer; see the module docstring for the contract."""

    #: Whether ``forward`` behaves differently in training (Dropout, BatchNormalization).
    has_training_mode: ClassVar[bool] = False
    #: Whether the layer takes integer indices (a first layer then gets ``int64`` inputs, never floats).
    takes_indices: ClassVar[bool] = False
    #: Whether the layer can take an input that carries a padding mask (see the module docstring); the default
    #: :meth:`compute_mask` then passes it on unchanged.
    supports_masking: ClassVar[bool] = False
    #: Whether the layer's work is large and not one matrix product, so that a model holding it trains on
    #: barenet's threads with BLAS on one thread (:mod:`barenet.threads`).
    splits_batch: ClassVar[bool] = False

    def __init__(self, *, input_shape: tuple[int, ...] | None = None, name: str | None = None) -> None:
        self.name = name
        self.input_shape: tuple[int, ...] | None = tuple(input_shape) if input_shape is not None else None
        self.output_shape: tuple[int, ...] | None = None
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.built = False
        self.dtype: np.dtype = np.dtype("float32")

    # ----------------------------------------------------------------- life cycle
    def build(self, input_shape: tuple[int, ...], rng: np.random.Generator, dtype: Any = "float32") -> None:
        """Create parameters for inputs of shape ``(batch, *input_shape)``.

        Subclasses with parameters override this and call ``super().build(...)`` first.
        """
        self.input_shape, self.output_shape = self._build_shapes(input_shape)
        self.dtype = np.dtype(dtype)
        self.rng = rng
        self.built = True

    def _build_shapes(self, input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``(input shape, output shape)`` for inputs of ``input_shape``, checked against a declared input shape."""
        if self.input_shape is not None and tuple(self.input_shape) != tuple(input_shape):
            raise ShapeError(
                f"{self.describe()} was declared with input shape {self.input_shape}, "
                f"but the previous layer outputs {tuple(input_shape)}"
            )
        shape = tuple(int(d) for d in input_shape)
        return shape, self.compute_output_shape(shape)

    def dry_build(self, input_shape: tuple[int, ...], dtype: Any = "float32") -> tuple[
            dict[str, tuple[int, ...]], dict[str, tuple[int, ...]], tuple[int, ...]]:
        """``(param shapes, buffer shapes, output shape)`` that ``build(input_shape, ...)`` would give.

        Nothing the size of a weight is allocated and no random number is drawn: ``build`` runs on a
        copy of this (unbuilt) layer whose initializers return zero-strided arrays that own one element,
        and whose ``add_param`` only records them. Buffers a layer creates directly (BatchNormalization's
        statistics) are as large as one input sample's axis, so the caller bounds the sample size.

        A layer whose class keeps :meth:`Layer.build` (activations, Dropout, Flatten ...) creates no
        parameter, buffer or sublayer when built, so its shapes are computed without the copy, which
        would cost far more than the rest of loading such a layer.
        """
        if type(self).build is Layer.build:
            return {}, {}, tuple(self._build_shapes(tuple(input_shape))[1])
        probe = copy.deepcopy(self)
        for layer in _layer_tree(probe):
            for key in [k for k in vars(layer) if k.endswith("_initializer")]:
                setattr(layer, key, _memory_free)
            layer.add_param = _recorder(layer)  # type: ignore[method-assign]
        probe.build(tuple(input_shape), np.random.default_rng(0), dtype)
        return ({k: tuple(v.shape) for k, v in probe.params.items()},
                {k: tuple(v.shape) for k, v in probe.buffers.items()}, tuple(probe.output_shape or ()))

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape of one output sample given the shape of one input sample (default: unchanged)."""
        return tuple(input_shape)

    def takes_own_input(self, options: Mapping[str, Any]) -> bool:
        """Whether a graph call with the keyword ``options`` takes the layer's own input: samples of the shape
        it is built for (ids, for a layer that ``takes_indices``).

        True for every call by default, after checking that each option is a keyword-only argument of
        ``forward`` (other than ``training``, ``cache`` and ``mask``, which the model passes itself). A layer that
        returns False for some options (``Embedding``'s ``reverse=True``) is neither built from such a call nor
        compared with its input shape there: its ``compute_output_shape(shape, **options)`` checks the call's
        shape, naming what it expected. Options unknown to the layer (or, where it checks them, of the wrong
        type) raise :class:`~barenet.errors.ConfigError` here: a model file's options are checked through this
        method before anything is built.
        """
        allowed = call_options(type(self).forward)
        unknown = [k for k in options if allowed is not None and k not in allowed]
        if unknown:
            raise ConfigError(f"{self.describe()} takes no call option {unknown[0]!r:.60}; its calls take "
                              f"{sorted(allowed) if allowed else 'no options'}")
        return True

    def forward(self, x: np.ndarray, *, training: bool = False, cache: Cache | None = None) -> np.ndarray:
        """Map ``x : (batch, *input_shape)`` to ``(batch, *output_shape)``; with a ``cache``, store in it
        what :meth:`backward` needs."""
        raise NotImplementedError

    def backward(self, grad: np.ndarray, cache: Cache) -> np.ndarray | None:
        """Given dLoss/dOutput of the call that filled ``cache``, fill ``grads`` and return dLoss/dInput
        (``None`` when ``cache.input_grad`` is False)."""
        raise NotImplementedError

    def __call__(self, x: Any, *, training: bool = False) -> Any:
        """``layer(x)``: on symbolic tensors (:func:`barenet.Input` and what layers return from them), a node of
        a graph (:mod:`barenet.models.graph`); on arrays, :meth:`forward` in inference mode by default."""
        from ..models import graph

        if graph.is_symbolic(x):
            return graph.call_layer(self, x)
        return self.forward(x, training=training)

    def compute_mask(self, x: Any, mask: Any = None) -> np.ndarray | None:
        """The padding mask ``(batch, time)`` of this layer's output for input ``x`` whose mask is ``mask``
        (a list of masks, ``None`` entries included, for a layer called on a list), or ``None`` for none.

        The default passes a single input's mask on, for a layer that ``supports_masking``; a layer that makes
        or combines masks (Embedding, the merges, MultiHeadAttention) or drops them (GlobalAveragePooling1D)
        overrides it. It depends on the inputs' values only where the layer makes a mask from ids.
        """
        masks = mask if isinstance(mask, (list, tuple)) else [mask]
        if all(m is None for m in masks):
            return None
        if not self.supports_masking or isinstance(mask, (list, tuple)):
            raise ConfigError(f"{self.describe()} cannot take an input that carries a padding mask")
        return mask

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-serializable values."""
        config: dict[str, Any] = {}
        if self.name is not None:
            config["name"] = self.name
        if self.input_shape is not None and not self.built:
            config["input_shape"] = list(self.input_shape)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Layer:
        """Rebuild an unbuilt layer from :meth:`get_config`'s output (``*_initializer`` entries included)."""
        config = dict(config)
        if "input_shape" in config and config["input_shape"] is not None:
            config["input_shape"] = tuple(config["input_shape"])
        for key, value in config.items():
            if key.endswith("_initializer"):
                config[key] = initializers.deserialize(value)
        return cls(**config)

    @staticmethod
    def decays(name: str) -> bool:
        """Whether weight decay and the L2 penalty apply to the parameter called ``name``.

        ``name`` is a layer's parameter name (``"kernel"``) or a model's dotted key
        (``"layers.0.kernel"``): kernels and embedding matrices decay, biases and normalization
        parameters do not. It depends on the name alone, so an optimizer reads it from the keys
        it is given.
        """
        return name.rpartition(".")[2].endswith(DECAYED_NAME_ENDINGS)

    # ----------------------------------------------------------------- helpers
    def add_param(self, name: str, value: np.ndarray) -> np.ndarray:
        """Register a trainable array and a zeroed gradient of the same shape and dtype."""
        self.params[name] = value
        self.grads[name] = np.zeros_like(value)
        return value

    def move_parameters(self, place: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]) -> None:
        """Hand every ``(param, grad)`` pair to ``place`` and keep the arrays it returns instead.

        ``place`` returns arrays of the same shapes and values, typically views of one large buffer
        (see :meth:`barenet.Sequential.build`); layers must therefore read ``params``/``grads``
        through the dicts and write gradients in place, never keep their own references.
        """
        for name in self.params:
            self.params[name], self.grads[name] = place(self.params[name], self.grads[name])

    def weights(self) -> list[np.ndarray]:
        """Parameters then buffers, in declaration order (the order of ``get_weights``): the layer's arrays
        themselves, not copies."""
        return [*self.params.values(), *self.buffers.values()]

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the parameters then the buffers, in declaration order (Dense: kernel, bias;
        BatchNormalization: gamma, beta, moving mean, moving variance), as Keras's ``layer.get_weights()``;
        :meth:`set_weights` takes them back."""
        return [w.copy() for w in self.weights()]

    def set_weights(self, arrays: list[np.ndarray]) -> None:
        """Copy ``arrays`` (in :meth:`weights` order) into this built layer, checking shapes."""
        names = [*self.params, *self.buffers]
        if len(arrays) != len(names):
            raise ShapeError(f"{self.describe()} has {len(names)} weight arrays {names}, got {len(arrays)}")
        for key, value in zip(names, arrays, strict=True):
            store = self.params if key in self.params else self.buffers
            value = np.asarray(value)
            if value.shape != store[key].shape:
                raise ShapeError(
                    f"{self.describe()} weight {key!r} has shape {store[key].shape}, got {value.shape}"
                )
            store[key][...] = value

    @property
    def n_params(self) -> int:
        """Number of trainable scalars."""
        return int(sum(p.size for p in self.params.values()))

    def check_input(self, x: np.ndarray) -> None:
        """Raise a :class:`ShapeError` naming this layer when ``x`` does not fit ``input_shape``."""
        if not self.built:
            raise NotFittedError(f"{self.describe()} is not built; call build(input_shape, rng) first")
        if x.shape[1:] != self.input_shape:
            raise ShapeError(
                f"{self.describe()} expected input of shape (batch, {', '.join(map(str, self.input_shape))}), "
                f"got {x.shape}"
            )

    def describe(self) -> str:
        """Short human name used in messages: ``Dense(64) 'hidden'``."""
        text = repr(self)
        return f"{text} {self.name!r}" if self.name else text

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k not in ("name", "input_shape"))
        return f"{type(self).__name__}({args})"


def weights_of(layer: Any) -> list[np.ndarray]:
    """A layer's (or a model used as a layer's) parameters then buffers, in declaration order."""
    return [*layer.params.values(), *layer.buffers.values()]


def _layer_tree(layer: Layer) -> Iterator[Layer]:
    """``layer`` and every layer it holds in its attributes (Bidirectional's two directions)."""
    yield layer
    for value in vars(layer).values():
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(item, Layer):
                yield from _layer_tree(item)


def _memory_free(shape, fan_in, fan_out, rng, dtype) -> np.ndarray:
    """A writable array of ``shape`` whose elements all share one cell: shape without memory."""
    shape = tuple(int(n) for n in shape)
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype=dtype), shape=shape, strides=(0,) * len(shape),
                                           writeable=True)


def _recorder(layer: Layer) -> Callable[[str, np.ndarray], np.ndarray]:
    def add_param(name: str, value: np.ndarray) -> np.ndarray:
        layer.params[name] = layer.grads[name] = value
        return value
    return add_param


def _uninitialized(shape, fan_in, fan_out, rng, dtype) -> np.ndarray:
    return np.empty(shape, dtype=dtype)


@contextmanager
def skip_initialization(layers: list[Layer]) -> Iterator[None]:
    """Within the block, building ``layers`` allocates their parameters without drawing them (``np.empty``).

    For weights about to be overwritten (loading a file): no random draws, no orthogonalization.
    The layers' own initializers are back in place afterwards.
    """
    saved = [(layer, key, value) for top in layers for layer in _layer_tree(top)
             for key, value in vars(layer).items() if key.endswith("_initializer")]
    for layer, key, _ in saved:
        setattr(layer, key, _uninitialized)
    try:
        yield
    finally:
        for layer, key, value in saved:
            setattr(layer, key, value)
