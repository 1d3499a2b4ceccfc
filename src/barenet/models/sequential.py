"""The Sequential model: a stack of layers, its parameters, and the forward and backward pass.

The training loop lives in :mod:`barenet.models.training` and the checks of user input in
:mod:`barenet.models.validation`; this module is the network itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

import numpy as np

from .. import losses as losses_mod
from .. import memory, threads
from .. import metrics as metrics_mod
from .. import optimizers as optimizers_mod
from ..errors import ConfigError, NotFittedError, ShapeError
from ..layers import Cache, Dense, Layer, check_contract, layer_class
from ..layers.activations import Activation
from ..layers.base import weights_of
from ..rng import Seed, make_rng
from . import masking, streams, training, validation
from .callbacks import Callback, StepProgress
from .history import History
from .keras_api import KerasMethods


class Gradients(NamedTuple):
    """What :meth:`Sequential.compute_gradients` returns for one batch."""

    #: The loss (L2 penalty included).
    loss: float
    #: dLoss/dparameter keyed ``"layers.<i>.<name>"``, same shapes as :meth:`Sequential.parameters`.
    parameters: dict[str, np.ndarray]
    #: dLoss/dinput, shape of the batch (``None`` when the first layer takes integer ids).
    inputs: np.ndarray | None


class Sequential(KerasMethods):
    """A linear stack of layers.

    Parameters
    ----------
    layers : list of Layer
        In order from input to output. When the first layer declares ``input_dim``/``input_shape`` the
        model is built at once (as in Keras: ``get_weights``, ``summary`` and :func:`barenet.save` work
        before ``fit``); otherwise it is built from the data at the first ``fit``.
    seed : int, optional
        Seeds the model's one random generator, used for weight initialization, shuffling,
        validation splits and dropout: the same seed gives the same weights and history, bit for bit.
    dtype : {"float32", "float64"}
        Precision of parameters and computations; inputs are cast to it.

    Examples
    --------
    >>> import barenet as bn
    >>> model = bn.Sequential([bn.layers.Dense(10, activation="relu", input_dim=2),
    ...                        bn.layers.Dense(1, activation="sigmoid")], seed=42)
    """

    def __init__(self, layers: Sequence[Layer] | None = None, *, seed: Seed = None, dtype: Any = "float32",
                 name: str | None = None) -> None:
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ConfigError(f"dtype must be 'float32' or 'float64', got {dtype.name!r}")
        self.layers: list[Layer] = []
        self.dtype = dtype
        self.seed = seed if isinstance(seed, (int, np.integer)) else None
        self.rng = make_rng(seed)
        self.name = name
        self.built = False
        self.loss: losses_mod.Loss | None = None
        self.optimizer: optimizers_mod.Optimizer | None = None
        self.metric_names: list[str] = []
        #: How a batch's loss is normalized; see :meth:`compile`.
        self.reduction = "batch"
        self.stop_training = False
        #: JSON-serializable notes saved with the model (for example the preprocessing the CLI applied).
        self.metadata: dict[str, Any] = {}
        layers = list(layers or [])
        seen: set[int] = set()
        for layer in layers:  # what add checks, in one pass: adding one layer at a time costs O(n) each
            _check_layer(layer)
            if id(layer) in seen:
                raise ConfigError(f"{layer.describe()} is already in the model; create a new layer to add another")
            seen.add(id(layer))
        self.layers = layers
        if layers and layers[0].input_shape is not None:
            self.build()

    # ----------------------------------------------------------------- construction
    def add(self, layer: Layer) -> None:
        """Append a layer; on a built model it is built at once on the current output shape."""
        _check_layer(layer)
        if any(layer is other for other in self.layers):
            raise ConfigError(f"{layer.describe()} is already in the model; create a new layer to add another")
        if not self.built:
            self.layers.append(layer)
            if len(self.layers) == 1 and layer.input_shape is not None:
                self.build()
            return
        if not layer.built:
            layer.build(self.output_shape, self.rng, self.dtype)
        elif layer.input_shape != self.output_shape:
            raise ShapeError(f"{layer.describe()} was built for input {layer.input_shape}, but the model "
                             f"outputs {self.output_shape}")
        origins = getattr(self, "mask_origins", None) or [None] * len(self.layers)
        origin = masking.output_mask_origin(layer, [self.output_shape], [False], [origins[-1]], True,
                                            layer.output_shape)
        self.mask_origins = [*origins, origin]
        self.layers.append(layer)
        self.output_shape = layer.output_shape
        self._pack_parameters()

    @classmethod
    def from_architecture(cls, architecture: Sequence[dict[str, Any]], **kwargs: Any) -> Sequential:
        """Build a stack of Dense layers from the tutorials' list of dicts.

        Each dict has ``input_dim``, ``output_dim`` and ``activation`` (and optionally any other
        :class:`~barenet.layers.Dense` argument such as ``kernel_initializer``); each layer's
        ``input_dim`` must equal the previous ``output_dim``. ``kwargs`` go to the model (``seed``, ``dtype``).
        """
        if not architecture:
            raise ConfigError("architecture is empty; expected a list of {'input_dim', 'output_dim', 'activation'}")
        layers = []
        for i, spec in enumerate(architecture):
            spec = dict(spec)
            missing = {"input_dim", "output_dim"} - set(spec)
            if missing:
                raise ConfigError(f"architecture[{i}] lacks {sorted(missing)}; got keys {sorted(spec)}")
            in_dim, out_dim = spec.pop("input_dim"), spec.pop("output_dim")
            if i and in_dim != architecture[i - 1]["output_dim"]:
                raise ShapeError(f"architecture[{i}] has input_dim {in_dim}, but architecture[{i - 1}] "
                                 f"outputs {architecture[i - 1]['output_dim']}")
            layers.append(Dense(out_dim, input_dim=in_dim if i == 0 else None, **spec))
        return cls(layers, **kwargs)

    def build(self, input_shape: Sequence[int] | None = None) -> None:
        """Create every layer's parameters for samples of shape ``input_shape`` (batch axis excluded).

        Building a built model again for the same shape does nothing; another shape is refused.
        """
        if not self.layers:
            raise ConfigError("the model has no layers; add at least one")
        if self.built:
            if input_shape is not None and tuple(int(d) for d in input_shape) != self.input_shape:
                raise ShapeError(f"the model is built for inputs {self.input_shape}, cannot build it again for "
                                 f"{tuple(input_shape)}; create a new model")
            return
        if input_shape is None:
            input_shape = self.layers[0].input_shape
            if input_shape is None:
                raise NotFittedError(
                    f"cannot build: the first layer {self.layers[0].describe()} has no input_dim/input_shape "
                    "and no data has been seen; pass input_dim=... or call fit first"
                )
        shape = tuple(int(d) for d in input_shape)
        self.input_shape = shape
        origin, self.mask_origins = None, []
        for i, layer in enumerate(self.layers):
            if not layer.built:
                layer.build(shape, self.rng, self.dtype)
            elif layer.input_shape != shape:
                raise ShapeError(f"{layer.describe()} was built for input {layer.input_shape}, but the layers "
                                 f"before it output {shape}")
            origin = masking.output_mask_origin(layer, [shape], [i == 0 and layer.takes_indices], [origin], True,
                                                layer.output_shape)
            self.mask_origins.append(origin)
            shape = layer.output_shape
        self.output_shape = shape
        self._pack_parameters()
        self.built = True

    def build_for(self, X: Any) -> None:
        """Build an unbuilt model from its first layer's declared input shape or, lacking one, from the
        samples of ``X`` (what ``fit`` and ``compute_gradients`` do before their first batch)."""
        if self.built:
            return
        if self.layers and self.layers[0].input_shape is None:
            self.build(self.check_inputs(X).shape[1:])
        else:
            self.build()

    def _pack_parameters(self) -> None:
        """Move every layer's parameters into one contiguous array and their gradients into another.

        Each layer keeps views of the two arrays in its ``params``/``grads`` dicts, so nothing changes
        for it; the optimizer recognizes the layout and updates the whole model with one set of array
        operations per step instead of one per parameter array (Adam's step on the benchmark MLP: 0.74
        instead of 0.84-1.0 ms). Values are kept, so packing an already trained model is harmless.
        """
        arrays = [p for layer in self.layers for p in layer.params.values()]
        if not arrays or len({a.dtype for a in arrays}) != 1:
            return
        flat_params = np.empty(sum(a.size for a in arrays), dtype=arrays[0].dtype)
        flat_grads = np.zeros_like(flat_params)
        offset = 0

        def place(param: np.ndarray, grad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            nonlocal offset
            part = slice(offset, offset + param.size)
            offset += param.size
            new_param, new_grad = flat_params[part].reshape(param.shape), flat_grads[part].reshape(param.shape)
            new_param[...], new_grad[...] = param, grad
            return new_param, new_grad

        for layer in self.layers:
            old = {id(a): name for name, a in layer.params.items()}
            old.update({id(a): f"gradient of {name}" for name, a in layer.grads.items()})
            layer.move_parameters(place)
            _refuse_own_references(layer, old)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Pickle (joblib, Dask, multiprocessing) stores views as separate arrays: pack them again.
        self.__dict__.update(state)
        self.__dict__.setdefault("reduction", "batch")  # pickled before compile had it
        if self.built:
            self._pack_parameters()

    def compile(self, loss: str | losses_mod.Loss = "mean_squared_error",
                optimizer: str | optimizers_mod.Optimizer = "adam",
                metrics: Sequence[str] | None = None, *, reduction: str = "batch") -> None:
        """Choose the loss, optimizer and metrics used by ``fit`` and ``evaluate``.

        Parameters
        ----------
        loss : str or Loss
            ``"mean_squared_error"`` (``"mse"``), ``"mean_absolute_error"`` (``"mae"``), ``"huber"``,
            ``"binary_crossentropy"`` (``"bce"``), ``"categorical_crossentropy"`` (also
            ``"sparse_categorical_crossentropy"``, ``"cross_entropy"``: integer labels or one-hot rows), or a
            :mod:`barenet.losses` object for options (``from_logits``, ``label_smoothing``, ``delta``).
        optimizer : str or Optimizer
            ``"sgd"``, ``"rmsprop"``, ``"adam"``, ``"adamw"`` with their default settings, or a
            :mod:`barenet.optimizers` object (learning rate, momentum, ``clipnorm``, ``global_clipnorm`` ...).
        metrics : list of str, optional
            ``"accuracy"`` (``"acc"``), ``"precision"``, ``"recall"``, ``"f1"`` (positive class for binary
            tasks, macro otherwise), ``"precision_macro"``, ``"recall_macro"``, ``"f1_macro"``, ``"mse"``
            (``"mean_squared_error"``), ``"mae"`` (``"mean_absolute_error"``), ``"r2"``.
        reduction : {"batch", "sample_weight"}, default "batch"
            What a batch's loss is divided by. With ``"batch"`` (Keras's rule) it is the number of samples
            :math:`b` and the L2 penalty :math:`P = \\sum_{layers} \\lambda \\|W\\|^2` is added whole:
            :math:`J = \\frac1b \\sum_i w_i \\ell_i + P`. With ``"sample_weight"`` (scikit-learn's MLP) it is
            the batch's sum of sample weights, penalty included: :math:`J = (\\sum_i w_i \\ell_i + P) / \\sum_i w_i`,
            so a weight of 3 is the same as three copies of the sample, and the penalty counts for less in a
            heavier batch. Without sample weights the two differ only in the penalty, :math:`P / b` instead of
            :math:`P`. A batch whose weights are all zero divides its penalty by :math:`b`. With per-step
            weights ``(batch, steps)`` the weight of a sample is its mean over the steps.

        Raises
        ------
        ConfigError
            An unknown name (the message lists the known ones); the model keeps its earlier settings.
        """
        # Everything is resolved before anything is assigned: a failed compile leaves the model as it was.
        new_loss = losses_mod.get(loss)
        new_optimizer = optimizers_mod.get(optimizer)
        names = [str(m) for m in (metrics or [])]
        for name in names:
            metrics_mod.get(name)
        if reduction not in REDUCTIONS:
            raise ConfigError(f"reduction must be one of {list(REDUCTIONS)}, got {reduction!r}")
        self.loss, self.optimizer, self.metric_names = new_loss, new_optimizer, names
        self.reduction = reduction

    # ----------------------------------------------------------------- parameters
    def parameters(self) -> dict[str, np.ndarray]:
        """Trainable arrays keyed ``"layers.<i>.<name>"`` (the optimizer's keys)."""
        return {f"layers.{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()}

    def gradients(self) -> dict[str, np.ndarray]:
        """Gradients of the last backward pass, same keys as :meth:`parameters`."""
        return {f"layers.{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.grads.items()}

    def get_weights(self) -> list[np.ndarray]:
        """Copies of all weights in layer order (Dense: kernel, bias; BatchNormalization: gamma, beta,
        moving mean, moving variance)."""
        self.require_built("get_weights")
        return [w.copy() for layer in self.layers for w in weights_of(layer)]

    def named_weights(self) -> dict[str, np.ndarray]:
        """Copies of all weights and buffers by name: ``{"layers.0.kernel": ..., "layers.3.moving_mean": ...}``.

        Parameters are keyed as in :meth:`parameters`; buffers (non-trainable state) by the same rule.
        The order is that of :meth:`get_weights`.
        """
        self.require_built("named_weights")
        return {f"layers.{i}.{name}": value.copy() for i, layer in enumerate(self.layers)
                for name, value in (*layer.params.items(), *layer.buffers.items())}

    def set_weights(self, weights: Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> None:
        """Set weights from a list in :meth:`get_weights` order, or from a dict keyed as in
        :meth:`named_weights` (every name must exist; a dict may hold a subset); shapes must match."""
        self.require_built("set_weights")
        if isinstance(weights, Mapping):
            self._set_named_weights(weights)
            return
        expected = sum(len(weights_of(layer)) for layer in self.layers)
        if len(weights) != expected:
            raise ShapeError(f"set_weights expected {expected} arrays for this model, got {len(weights)}")
        start = 0
        for layer in self.layers:
            n = len(weights_of(layer))
            layer.set_weights(list(weights[start:start + n]))
            start += n

    def _set_named_weights(self, weights: Mapping[str, np.ndarray]) -> None:
        stores = {f"layers.{i}.{name}": (layer, store) for i, layer in enumerate(self.layers)
                  for store in (layer.params, layer.buffers) for name in store}
        unknown = sorted(set(weights) - set(stores))
        if unknown:
            raise ShapeError(f"set_weights got unknown names {unknown[:5]}; this model has {list(stores)[:8]}...")
        for key, value in weights.items():
            layer, store = stores[key]
            name = key.rsplit(".", 1)[1]
            value = np.asarray(value)
            if value.shape != store[name].shape:
                raise ShapeError(f"{layer.describe()} weight {name!r} ({key}) has shape {store[name].shape}, "
                                 f"got {value.shape}")
            store[name][...] = value

    @property
    def n_params(self) -> int:
        """Number of trainable scalars."""
        return sum(layer.n_params for layer in self.layers)

    # ----------------------------------------------------------------- forward / backward
    def _fusable(self) -> bool:
        """True when the loss has a fused form for the network's final activation."""
        last = self.layers[-1]
        act = last if isinstance(last, Activation) else getattr(last, "activation", None)
        return (self.loss is not None and self.loss.fuses_with is not None and act is not None
                and act.kind == self.loss.fuses_with and not getattr(self.loss, "from_logits", False))

    def forward(self, x: np.ndarray, *, training: bool = False, logits: bool = False,
                cache: Cache | None = None) -> np.ndarray:
        """Run the stack on a checked batch; with ``logits=True`` stop before the final activation.

        As for a layer (:mod:`barenet.layers.base`), a ``cache`` receives what :meth:`backward` needs, one
        child cache per layer; without one nothing is kept.
        """
        return self._run(x, training=training, logits=logits, cache=cache)[0]

    def _run(self, x: np.ndarray, *, training: bool, logits: bool, cache: Cache | None
             ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`forward`'s output and its padding mask ``(batch, time)`` (``None`` when it carries none), the
        masks of the call passed from layer to layer in a local variable (:mod:`barenet.models.masking`)."""
        def sub(i: int) -> Cache | None:  # the first layer's input gradient only when the caller wants it
            return None if cache is None else cache.child(str(i), input_grad=cache.input_grad if i == 0 else True)

        origins = getattr(self, "mask_origins", None) or [None] * len(self.layers)
        if cache is None and not logits and all(o is None for o in origins):  # inference without masks
            for layer in self.layers:
                with threads.layer(layer):
                    x = layer.forward(x, training=training)
            return x, None
        mask = None
        for i, layer in enumerate(self.layers):
            options = {"mask": mask} if mask is not None and masking.takes_mask(layer) else {}
            last = i == len(self.layers) - 1
            if last and cache is not None:
                cache["logits"] = logits
            with threads.layer(layer):  # split the batch, or leave a layer's products to BLAS's threads
                if last and logits:
                    y = x if isinstance(layer, Activation) else layer.forward_logits(x, training=training,
                                                                                     cache=sub(i))
                else:
                    y = layer.forward(x, training=training, cache=sub(i), **options)
            mask = layer.compute_mask(x, mask) if origins[i] is not None else None
            x = y
        return x, mask

    def backward(self, grad: np.ndarray, cache: Cache) -> np.ndarray | None:
        """Backpropagate dLoss/dOutput (dLoss/dLogits when the forward call stopped at the logits) through the
        stack, filling every layer's ``grads``; returns dLoss/dInput (``None`` unless ``cache.input_grad``)."""
        last, i = self.layers[-1], len(self.layers) - 1
        with threads.layer(last):
            if cache["logits"]:
                if not isinstance(last, Activation):
                    grad = last.backward_logits(grad, cache[str(i)])
            else:
                grad = last.backward(grad, cache[str(i)])
        for i in range(len(self.layers) - 2, -1, -1):
            with threads.layer(self.layers[i]):
                grad = self.layers[i].backward(grad, cache[str(i)])
        return grad

    def _loss_and_grad(self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None, training: bool, need_grad: bool,
                       input_grad: bool = False) -> tuple[float, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Loss (with the L2 penalty), predictions and, when ``need_grad``, the gradients (in the layers) and,
        with ``input_grad``, dLoss/dInput; last the output's padding mask (or ``None``)."""
        fused = self._fusable()
        cache = Cache(input_grad=input_grad) if need_grad else None
        out, mask = self._run(x, training=training, logits=fused, cache=cache)
        penalty_scale = 1.0
        if self.reduction == "sample_weight":
            w, penalty_scale = per_unit_weight(w, len(out))
        value, grad, y_pred = output_loss(self.loss, out, y, w, mask, fused=fused, need_grad=need_grad)
        grad_input = self.backward(grad, cache) if need_grad else None
        return value + self._penalty(need_grad, penalty_scale), y_pred, grad_input, mask

    def _penalty(self, add_grads: bool, scale: float = 1.0) -> float:
        r"""L2 penalty :math:`s \sum_{layers} \lambda \|W\|^2` for ``scale`` :math:`s`; adds :math:`2 s \lambda W` to
        kernel gradients."""
        total = 0.0
        for layer in self.layers:
            if isinstance(layer, Sequential):  # a model used as a layer: its own layers' penalties
                total += layer._penalty(add_grads, scale)
                continue
            l2 = getattr(layer, "l2", 0.0) * scale
            if not l2:
                continue
            for name, param in layer.params.items():
                if layer.decays(name):
                    total += l2 * float(np.vdot(param, param))
                    if add_grads:
                        layer.grads[name] += param.dtype.type(2 * l2) * param
        return total

    # ----------------------------------------------------------------- data checks
    def check_inputs(self, X: Any, what: str = "X", *, allow_empty: bool = False) -> np.ndarray:
        """``X`` checked and converted for this model (see :func:`barenet.models.validation.check_inputs`)."""
        if not self.layers:
            raise ConfigError("the model has no layers; add at least one")
        return validation.check_inputs(X, dtype=self.dtype, first_layer=self.layers[0],
                                       input_shape=self.input_shape if self.built else None, what=what,
                                       allow_empty=allow_empty)

    def check_targets(self, y: Any, n: int, what: str = "y") -> np.ndarray:
        """``y`` checked and converted for the compiled loss (see :meth:`barenet.losses.Loss.prepare_targets`)."""
        self.require_compiled("checking targets")
        return validation.check_targets(y, n, loss=self.loss, output_shape=self.output_shape, dtype=self.dtype,
                                        what=what)

    @property
    def task(self) -> str:
        """``"binary"``, ``"multiclass"``, ``"multilabel"`` or ``"regression"``, from the loss and output width."""
        if self.loss is None:
            raise NotFittedError("the model is not compiled; call compile(loss=..., optimizer=...) first")
        if isinstance(self.loss, losses_mod.CategoricalCrossentropy):
            return "multiclass"
        if isinstance(self.loss, losses_mod.BinaryCrossentropy):
            return "binary" if int(np.prod(self.output_shape)) == 1 else "multilabel"
        return "regression"

    def require_built(self, what: str) -> None:
        """Raise :class:`NotFittedError` naming ``what`` unless the model is built."""
        if not self.built:
            raise NotFittedError(f"{what} needs a built model; call fit (or build) first")

    def require_compiled(self, what: str) -> None:
        """Raise :class:`NotFittedError` naming ``what`` unless the model is compiled."""
        if self.loss is None or self.optimizer is None:
            raise NotFittedError(f"{what} needs a compiled model; call compile(loss=..., optimizer=...) first")

    def metric_logs(self, y_true: np.ndarray, y_pred: np.ndarray, prefix: str = "", *,
                    mask: np.ndarray | None = None) -> dict[str, float]:
        """The compiled metrics of ``y_pred`` (outputs, or predicted labels for a multi-class model) against
        ``y_true``, keyed by name (with ``prefix``); with the output's padding ``mask`` ``(n, time)``, over the
        real steps only, each a sample (as Keras's metrics take the mask)."""
        task, k = self.task, self.output_shape[-1]
        y_true, y_pred = masking.real_steps(y_true, y_pred, mask)
        return {prefix + name: metrics_mod.get(name)(y_true, y_pred, task, n_classes=k) for name in self.metric_names}

    def mask_buffer(self, n: int) -> np.ndarray | None:
        """An array to collect ``n`` samples' output padding masks ``(n, time)`` for :meth:`metric_logs`, or
        ``None`` when the output carries no mask."""
        origins = getattr(self, "mask_origins", None)
        if not origins or origins[-1] is None:
            return None
        return np.zeros((n, self.output_shape[0]), dtype=bool)

    def check_sample_weight(self, sample_weight: Any, n: int) -> np.ndarray | None:
        """``sample_weight`` checked for ``n`` samples (see :func:`barenet.models.validation.check_sample_weight`)."""
        return validation.check_sample_weight(sample_weight, n, self.dtype)

    @property
    def records_predictions(self) -> bool:
        """Whether an epoch keeps its predictions for :meth:`metric_logs` (there are metrics to compute)."""
        return bool(self.metric_names)

    def running_metrics(self) -> metrics_mod.RunningMetrics:
        """An accumulator of the compiled metrics over the batches of a stream (``update(y, y_pred)``,
        ``result(prefix)``), the stream's counterpart of :meth:`metric_logs`."""
        return metrics_mod.RunningMetrics(self.metric_names, self.task, self.output_shape[-1])

    def prediction_buffer(self, n: int) -> tuple[np.ndarray, bool]:
        """An array to collect ``n`` samples' predictions for the metrics, and whether it holds labels.

        A multi-class model keeps predicted labels ``(n, *output_shape[:-1])`` instead of probabilities, so
        the memory of an epoch's record does not grow with the number of classes.
        """
        if self.task == "multiclass":
            return np.empty((n, *self.output_shape[:-1]), dtype=np.int64), True
        return np.empty((n, *self.output_shape), dtype=self.dtype), False

    # ----------------------------------------------------------------- training and inference
    def _engine(self) -> AbstractContextManager[None]:
        """The block in which one batch of ``fit``, ``evaluate`` or ``predict`` (or ``compute_gradients``) runs:
        batches split across :mod:`barenet.threads` when a layer's ``splits_batch`` says so (convolution,
        pooling, batch normalization), each layer call marked by :func:`barenet.threads.layer`. One block a
        batch: a Dense layer before the first splitting layer keeps BLAS's own threads at every step."""
        return threads.engine(any(layer.splits_batch for layer in self.layers))

    def fit(self, X: Any, y: Any = None, *, epochs: int = 1, batch_size: int | None = 32, shuffle: bool = True,
            validation_data: Any = None, validation_split: float = 0.0,
            class_weight: dict[int, float] | None = None, sample_weight: Any = None,
            callbacks: Sequence[Callback] | None = None, verbose: int = 1, steps_per_epoch: int | None = None,
            validation_steps: int | None = None) -> History:
        """Train for ``epochs`` passes over ``(X, y)`` or a stream; the loop is :func:`barenet.models.training.fit`.

        Parameters
        ----------
        X : array (n_samples, *input_shape), or a stream
            Floats, cast to the model's dtype; integer token ids (kept as ``int64``) when the first layer
            is an :class:`~barenet.layers.Embedding`. A stream (see :mod:`barenet.models.streams`) gives
            batches ``(x, y)`` or ``(x, y, sample_weight)``: a :class:`barenet.data.Dataset` (batched with
            ``batch_size`` unless it is batched), a generator function, an iterable or an iterator of batches.
        y : array, or None with a stream
            Integer labels ``(n,)`` or ``(n, 1)``, or one-hot ``(n, classes)`` for categorical cross-entropy
            (per-step labels ``(n, steps)`` or ``(n, steps, classes)`` for sequence outputs), 0/1 labels for
            binary cross-entropy, real targets ``(n,)`` or ``(n, outputs)`` otherwise.
        epochs : int >= 0
        batch_size : int >= 1 or None
            Samples per gradient step; ``None`` uses the whole training set (full-batch gradient descent).
        shuffle : bool
            Reshuffle the training samples each epoch (with the model's generator); a stream shuffles itself
            (:meth:`barenet.data.Dataset.shuffle`).
        validation_data : (X_val, y_val) or (X_val, y_val, sample_weight_val), or a stream, optional
        validation_split : float in [0, 1)
            Hold out this fraction of the samples, taken from the end before shuffling (arrays only).
        class_weight : dict label -> weight, optional
            Multiplies the loss of each target by the weight of its class (each step of a sequence by its
            own label's weight).
        sample_weight : array (n_samples,), optional
        callbacks : list of Callback
        verbose : 0, 1 or 2
            0 silent, 1 progress bar (with rows per second, and the time left when the size is known), 2 one
            line per epoch.
        steps_per_epoch : int, optional
            With a stream: batches per epoch, each epoch going on where the last stopped (a re-iterable stream
            starts a new pass when one ends); without it an epoch is one whole pass.
        validation_steps : int, optional
            Batches of a validation stream evaluated after each epoch (default: a whole pass).

        Returns
        -------
        History
            Loss and metrics per epoch; ``history.kept_epoch`` is the epoch whose weights the model holds
            and ``history.diverged_at`` the epoch at which training diverged (or ``None``).

        Raises
        ------
        NotFittedError
            The model is not compiled, or cannot be built (no input shape known).
        ConfigError
            An argument is out of range (``epochs``, ``batch_size``, ``validation_split``, ``class_weight``).
        DataError, ShapeError
            ``X``, ``y`` or the weights are not numeric, not finite, or do not fit the model or each other.
        StreamError
            A stream's batch is malformed or fails these checks, or the stream raised; the message names the
            stream, the epoch and the batch, and the model keeps the weights of the last completed epoch.

        Notes
        -----
        Training stops early, keeping finite weights, when it diverges (a NaN or infinite loss, an epoch loss
        past :data:`barenet.models.training.DIVERGENCE_FACTOR` times the first epoch's, or a non-finite weight),
        and on Ctrl-C, keeping the weights of the last completed epoch (``model.interrupted`` is then True).
        """
        return training.fit(self, X, y, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                            validation_data=validation_data, validation_split=validation_split,
                            class_weight=class_weight, sample_weight=sample_weight, callbacks=callbacks,
                            verbose=verbose, steps_per_epoch=steps_per_epoch, validation_steps=validation_steps)

    def evaluate(self, X: Any, y: Any = None, *, sample_weight: Any = None, batch_size: int | None = None,
                 verbose: int = 0, steps: int | None = None) -> dict[str, float]:
        """Loss and compiled metrics on ``(X, y)`` in inference mode, as ``{"loss": ..., "accuracy": ...}``.

        ``batch_size`` samples are run at a time (default 1024; the results do not depend on it). ``verbose=1``
        shows a progress bar over the batches (on a terminal) and a closing line with the results, ``verbose=2``
        the line only; the default, 0, is silent (Keras's default shows the bar). ``X`` may be a stream of
        ``(x, y)`` or ``(x, y, sample_weight)`` batches (as for :meth:`fit`); ``steps`` then limits the batches
        read (default: one pass).
        """
        self.require_compiled("evaluate")
        self.require_built("evaluate")
        verbose = training.check_verbose(verbose)
        bs = validation.check_count(batch_size, "batch_size", allow_none=True) or training.PREDICT_BATCH
        steps = validation.check_count(steps, "steps", allow_none=True)
        if streams.is_stream(X):
            streams.check_options("X", y=y, sample_weight=sample_weight)
            feed = streams.Feed(X, steps=steps, batch_size=bs)
            try:
                progress = StepProgress("evaluate", feed.known_steps, verbose) if verbose else None
                return training.evaluate_feed(self, feed, progress=progress)
            finally:
                feed.close()
        X = self.check_inputs(X)
        y = self.check_targets(y, len(X))
        w = self.check_sample_weight(sample_weight, len(X))
        progress = StepProgress("evaluate", (len(X) + bs - 1) // bs, verbose) if verbose else None
        return training.evaluate_arrays(self, X, y, w, batch_size=bs, progress=progress)

    def predict(self, X: Any, *, batch_size: int | None = None, verbose: int = 0, steps: int | None = None
                ) -> np.ndarray:
        """Outputs for ``X : (n_samples, *input_shape)`` in inference mode: ``(n_samples, *output_shape)``
        (probabilities for sigmoid/softmax outputs); 0 samples give an empty ``(0, *output_shape)`` array.

        ``batch_size`` samples are run at a time (default 1024). ``verbose`` as for :meth:`evaluate`: 0 (the
        default) silent, 1 a progress bar and a closing line, 2 the line only. ``X`` may be a stream of batches
        ``x`` (or tuples whose first item is ``x``), read for ``steps`` batches (default: one pass).
        """
        self.require_built("predict")
        verbose = training.check_verbose(verbose)
        bs = validation.check_count(batch_size, "batch_size", allow_none=True) or training.PREDICT_BATCH
        steps = validation.check_count(steps, "steps", allow_none=True)
        if streams.is_stream(X):
            feed = streams.Feed(X, steps=steps, batch_size=bs)
            try:
                progress = StepProgress("predict", feed.known_steps, verbose) if verbose else None
                out = training.predict_feed(self, feed, progress=progress)
            finally:
                feed.close()
            return np.concatenate(out) if out else np.empty((0, *self.output_shape), dtype=self.dtype)
        X = self.check_inputs(X, allow_empty=True)
        if len(X) == 0:
            return np.empty((0, *self.output_shape), dtype=self.dtype)
        if len(X) == 1 and not verbose:  # one row splits nowhere: no engine block (see barenet.threads.parts)
            return self.forward(X, training=False)
        steps = -(-len(X) // bs)
        progress = StepProgress("predict", steps, verbose) if verbose else None
        out = []
        memory.keep_freed_memory(steps)
        for start in range(0, len(X), bs):
            with self._engine():  # one block a batch: see training._train_epoch
                out.append(self.forward(X[start:start + bs], training=False))
            if progress is not None:
                progress.update(len(out))
        if progress is not None:
            progress.end()
        return np.concatenate(out) if len(out) > 1 else out[0]

    def compute_gradients(self, X: Any, y: Any, *, sample_weight: Any = None, training: bool = True
                          ) -> Gradients:
        """The loss, every parameter's gradient and the gradient with respect to the input, for one batch.

        No optimizer step is taken and no weight changes (layers in training mode, such as
        BatchNormalization, do update their running statistics when ``training`` is True, as in ``fit``).

        Parameters
        ----------
        X : array (batch, *input_shape)
        y : array, targets as for :meth:`fit`
        sample_weight : array (batch,), optional
        training : bool
            Run the layers in training mode (dropout active, batch statistics), as ``fit`` does.

        Returns
        -------
        Gradients
            ``loss`` (float, the L2 penalty included), ``parameters``: ``{"layers.<i>.<name>": dLoss/dparam}``
            (copies, keyed like :meth:`parameters`), ``inputs``: dLoss/dX of shape ``X.shape`` (``None`` when
            the first layer takes integer ids).
        """
        self.require_compiled("compute_gradients")
        self.build_for(X)
        X = self.check_inputs(X)
        y = self.check_targets(y, len(X))
        w = self.check_sample_weight(sample_weight, len(X))
        takes_ids = self.layers[0].takes_indices
        with self._engine():
            value, _, grad_input, _ = self._loss_and_grad(X, y, w, training=training, need_grad=True,
                                                          input_grad=not takes_ids)
        return Gradients(value, {k: g.copy() for k, g in self.gradients().items()}, grad_input)

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None, *, training: bool,
                           need_grad: bool = True) -> tuple[float, np.ndarray, np.ndarray | None]:
        """Loss (with the L2 penalty), predictions and the output's padding mask (``None`` when it carries
        none; a list for several outputs) of a checked batch; with ``need_grad`` the gradients are left in the
        layers' ``grads`` (the training loop's step; :meth:`compute_gradients` is the public form for
        unchecked data)."""
        value, y_pred, _, mask = self._loss_and_grad(x, y, w, training=training, need_grad=need_grad)
        return value, y_pred, mask

    # ----------------------------------------------------------------- description
    def get_config(self) -> dict[str, Any]:
        """Architecture as JSON-serializable data (no weights)."""
        return {
            "name": self.name,
            "dtype": self.dtype.name,
            "seed": self.seed,
            "input_shape": list(self.input_shape) if self.built else None,
            "layers": [{"class": type(layer).__name__, "config": layer.get_config()} for layer in self.layers],
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Sequential:
        """Rebuild an (untrained) model from :meth:`get_config`'s output; built when the input shape is known."""
        layers = [layer_class(spec["class"]).from_config(spec.get("config", {})) for spec in config["layers"]]
        model = cls(layers, seed=config.get("seed"), dtype=config.get("dtype", "float32"), name=config.get("name"))
        if config.get("input_shape") is not None:
            model.build(config["input_shape"])
        return model

    def __repr__(self) -> str:
        inner = ", ".join(repr(layer) for layer in self.layers)
        return f"Sequential([{inner}], dtype={self.dtype.name!r})"


def output_loss(loss: losses_mod.Loss, out: np.ndarray, y: np.ndarray, w: np.ndarray | None, mask: np.ndarray | None,
                *, fused: bool, need_grad: bool) -> tuple[float, np.ndarray | None, np.ndarray]:
    """``(loss value, dLoss/d out, predictions)`` of one model output ``out`` (its logits when ``fused``).

    Per-step weights ``w : (batch, steps)`` (class weights of sequence labels) weigh each step of a sequence
    output: the loss then sees every step as a sample of its own, which gives the same mean (each loss averages
    over steps) with each step's own weight. A padding ``mask`` ``(batch, steps)`` on the output becomes such
    weights (:func:`barenet.models.masking.step_weights`), so that only real steps count. The gradient is
    ``None`` without ``need_grad`` (a fused loss computes it anyway).
    """
    shape = out.shape
    if mask is not None:
        w = masking.step_weights(mask, w, out.dtype)
    if w is not None and w.ndim == 2:
        out, y, w = out.reshape(-1, *shape[2:]), y.reshape(-1, *y.shape[2:]), w.reshape(-1)
    if fused:
        value, grad, y_pred = loss.fused(out, y, w)
    else:
        y_pred = out
        value = loss(y_pred, y, w)
        grad = loss.gradient(y_pred, y, w) if need_grad else None
    return value, None if grad is None else grad.reshape(shape), y_pred.reshape(shape)


#: The values of :meth:`Sequential.compile`'s ``reduction``.
REDUCTIONS = ("batch", "sample_weight")


def per_unit_weight(w: np.ndarray | None, rows: int) -> tuple[np.ndarray | None, float]:
    r"""A batch's sample weights and penalty scale for ``reduction="sample_weight"``.

    The losses divide :math:`\sum_i w_i \ell_i` by the number of entries of ``w``; dividing ``w`` by its mean
    :math:`\bar w` makes that :math:`\sum_i w_i \ell_i / \sum_i w_i`, and the penalty is scaled by
    :math:`1 / (\bar w \cdot rows)`, which is :math:`1 / \sum_i w_i` for weights ``(rows,)``. Weights that are all
    zero (or none) leave ``w`` as it is and scale the penalty by ``1 / rows``.
    """
    mean = 0.0 if w is None else float(w.mean())
    if mean == 0.0:
        return w, 1.0 / rows
    return w * w.dtype.type(1.0 / mean), 1.0 / (mean * rows)


def _check_layer(layer: Any) -> None:
    if not isinstance(layer, Layer):
        raise ConfigError(f"Sequential takes Layer objects, got {type(layer).__name__}: {layer!r}")
    check_contract(layer)


def _refuse_own_references(layer: Layer, moved: dict[int, str]) -> None:
    """Raise when ``layer`` still holds, as an attribute, an array that packing just moved.

    Such a reference (``self.w = self.add_param(...)``) would keep pointing at the old array, which the
    optimizer no longer updates: the layer would silently stop training. See :mod:`barenet.layers.base`.
    """
    for attr, value in vars(layer).items():
        if attr in ("params", "grads", "buffers"):
            continue
        if isinstance(value, dict):
            items = list(value.values())
        else:
            items = list(value) if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, np.ndarray) and id(item) in moved:
                raise ConfigError(
                    f"{layer.describe()} keeps its own reference to its {moved[id(item)]!r} in attribute "
                    f"{attr!r}; the model moves parameters into one packed array when it is built, so that "
                    f"reference would stop being trained. Read parameters through self.params[...] and "
                    f"gradients through self.grads[...] in forward/backward instead"
                )
