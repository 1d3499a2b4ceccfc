"""Embedding: a lookup table from integer token ids to dense vectors."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import initializers
from ..errors import ConfigError, DataError, NotFittedError, ShapeError
from ..kernels.embedding import scatter_add_rows
from .base import Cache, Layer, register


def token_indices(layer: Layer, x: np.ndarray, size: int, size_name: str) -> np.ndarray:
    """``x`` as an ``intp`` index array, after checking that every entry is an integer in ``[0, size)``;
    the messages name ``layer`` and its argument ``size_name`` (floats holding exact integers pass)."""
    x = np.asarray(x)
    if x.dtype.kind not in "iuf":
        raise DataError(f"{layer.describe()} expects integer token ids, got an array of dtype {x.dtype}")
    if x.dtype.kind == "f":
        bad = x != np.round(x)
        if bad.any():
            raise DataError(f"{layer.describe()} expects integer token ids; got non-integer value "
                            f"{float(x[bad].flat[0])!r} ({int(bad.sum())} such entries)")
    if x.size and (x.min() < 0 or x.max() >= size):
        worst = x.min() if x.min() < 0 else x.max()
        raise DataError(f"{layer.describe()} got token id {int(worst)}; ids must be in [0, {size - 1}]"
                        f" for {size_name}={size}")
    return x.astype(np.intp)


class Reversible(Layer):
    r"""A token table that also projects hidden states back onto the vocabulary: the layer's call
    ``layer(h, reverse=True)``, as Keras-Hub's ``ReversibleEmbedding``, the tied output projection of GPT-2.

    A subclass names its table (``table``, a parameter ``(vocabulary, dim)``), gives ``vocabulary``, ``dim`` and
    ``mask_zero``, and sends ``forward(x, reverse=True)`` to :meth:`project` and the backward pass of such a
    call (its cache holds ``"hidden"``) to :meth:`backward_projection`. The lookup is the layer's own call; the
    reverse call takes float hidden states ``h : (batch, ..., dim)`` and returns the logits ``h E^T : (batch,
    ..., vocabulary)`` (no bias). Both calls read the one table, so a model calling the layer both ways trains
    one set of weights, its gradient the sum of the two uses.

    Notes
    -----
    With :math:`z = h E^\top`: :math:`\partial L/\partial E = g^\top h` and :math:`\partial L/\partial h =
    g E` for :math:`g = \partial L/\partial z` (batch and sequence axes flattened). The reverse call passes
    its input's padding mask on (as a Dense head would), so a loss on its output counts the real steps only.
    """

    #: The name of the parameter ``(vocabulary, dim)`` the reverse call projects onto.
    table: str = "embeddings"

    @property
    def vocabulary(self) -> int:
        raise NotImplementedError

    @property
    def dim(self) -> int:
        raise NotImplementedError

    def __call__(self, x: Any, *, reverse: bool = False, training: bool = False) -> Any:
        """``layer(ids)`` looks tokens up; ``layer(h, reverse=True)`` projects hidden states onto the table.
        On symbolic tensors, a node of a graph (its options ``{"reverse": True}``); on arrays, :meth:`forward`."""
        from ..models import graph

        reverse = self._reverse({"reverse": reverse})
        if graph.is_symbolic(x):
            return graph.call_layer(self, x, {"reverse": True} if reverse else None)
        return self.forward(x, training=training, reverse=reverse)

    def _reverse(self, options: Any) -> bool:
        """The call's ``reverse`` option, after checking that it is the only option and a bool."""
        if not isinstance(options, dict) or set(options) - {"reverse"}:
            raise ConfigError(f"{self.describe()} takes the call option 'reverse' only, got {options!r:.100}")
        reverse = options.get("reverse", False)
        if not isinstance(reverse, (bool, np.bool_)):
            raise ConfigError(f"{self.describe()}'s call option reverse must be True or False, got {reverse!r:.60}")
        return bool(reverse)

    def takes_own_input(self, options):
        """False for the reverse call, which takes hidden states ``(..., dim)`` instead of ids."""
        return not self._reverse(options)

    def reverse_output_shape(self, input_shape: Any) -> tuple[int, ...]:
        """``(..., vocabulary)`` for hidden states of sample shape ``(..., dim)``, or a :class:`ShapeError`."""
        shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else ()
        if not shape or not all(isinstance(d, (int, np.integer)) for d in shape) or shape[-1] != self.dim:
            given = f"(None, {', '.join(map(str, shape))})" if shape else repr(input_shape)
            raise ShapeError(f"{self.describe()} called with reverse=True projects hidden states (batch, ..., "
                             f"{self.dim}) onto its {self.vocabulary} x {self.dim} table; got a tensor of shape "
                             f"{given:.200}")
        return (*shape[:-1], self.vocabulary)

    def project(self, h: np.ndarray, cache: Cache | None) -> np.ndarray:
        """The reverse call's forward pass: ``h : (batch, ..., dim)`` floats -> ``h E^T : (batch, ...,
        vocabulary)``."""
        if not self.built:
            raise NotFittedError(f"{self.describe()} is not built; call build(input_shape, rng) first")
        h = np.asarray(h)
        if h.dtype.kind != "f":
            raise DataError(f"{self.describe()} called with reverse=True expects float hidden states, got an array "
                            f"of dtype {h.dtype}")
        if h.ndim < 2 or h.shape[-1] != self.dim:
            raise ShapeError(f"{self.describe()} called with reverse=True expected hidden states of shape (batch, "
                             f"..., {self.dim}), got {h.shape}")
        if cache is not None:
            cache["hidden"] = h
        return h @ self.params[self.table].T

    def backward_projection(self, grad: np.ndarray, cache: Cache) -> np.ndarray | None:
        """The reverse call's backward pass: the table's gradient ``g^T h`` (every other parameter's is zero);
        returns ``g E``."""
        h = cache["hidden"]
        for name, g in self.grads.items():
            if name != self.table:
                g[...] = 0
        np.matmul(grad.reshape(-1, self.vocabulary).T, h.reshape(-1, self.dim), out=self.grads[self.table])
        return grad @ self.params[self.table] if cache.input_grad else None

    def compute_mask(self, x: Any, mask: Any = None, *, reverse: bool = False) -> np.ndarray | None:
        """The reverse call passes its input's mask on; the lookup makes ``x != 0`` with ``mask_zero``, else none
        (it takes ids, which carry no mask)."""
        if reverse:
            return mask
        if mask is not None:
            raise ConfigError(f"{self.describe()} looks up ids, which cannot carry a padding mask")
        return np.asarray(x) != 0 if self.mask_zero else None

    #: The reverse call passes a mask on; the lookup refuses one (:meth:`compute_mask`).
    supports_masking = True


@register
class Embedding(Reversible):
    r"""Map integer indices to rows of a trainable table: ``y[b, t] = embeddings[x[b, t]]``.

    Parameters
    ----------
    input_dim : int
        Vocabulary size; valid indices are ``0 .. input_dim - 1``.
    output_dim : int
        Length of each embedding vector.
    embeddings_initializer : str or callable
        See :mod:`barenet.initializers` (default: uniform on :math:`\pm 0.05`).
    input_length : int, optional
        Sequence length, for the first layer of a model (sets ``input_shape=(input_length,)``).
    mask_zero : bool
        Whether id 0 is padding, as in Keras: the output then carries the padding mask ``ids != 0``
        ``(batch, time)``, which the model hands to the layers after this one (attention ignores padded
        keys, GlobalAveragePooling1D averages over the real steps, the loss counts only real steps;
        see :mod:`barenet.models.masking`). The output itself is the same either way; id 0 still has a row.

    Calls
    -----
    ``emb(ids)`` looks the ids up. ``emb(h, reverse=True)`` projects hidden states onto the same table,
    ``logits = h @ embeddings.T``: the output layer of a language model whose weights are tied with its
    input embedding (GPT-2; Keras-Hub's ``ReversibleEmbedding``). In a graph both calls share the table and
    its gradient is the sum over them; follow the reverse call with ``Activation("softmax")`` for
    probabilities (a loss then takes the logits, as after ``Dense(..., activation="softmax")``). See
    :class:`Reversible`.

    Shapes
    ------
    ``x : (batch, time)`` integer ids (a model passes them as ``int64``; floats holding exact integers are
    accepted) -> ``y : (batch, time, output_dim)`` in the model's dtype;
    reverse: ``h : (batch, ..., output_dim)`` floats -> ``(batch, ..., input_dim)``;
    ``embeddings : (input_dim, output_dim)``.

    Notes
    -----
    The lookup is a product with one-hot rows, :math:`y = \mathrm{onehot}(x)\,E`, so
    :math:`\partial L/\partial E_k = \sum_{(b,t):\,x_{bt}=k} \partial L/\partial y_{bt}`: a scatter-add of the
    output gradient into the rows that were looked up. Indices are not differentiable, so
    ``backward`` returns ``None``.
    """

    takes_indices = True

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        *,
        embeddings_initializer: str | initializers.Initializer = "uniform",
        input_length: int | None = None,
        mask_zero: bool = False,
        **kwargs: Any,
    ) -> None:
        if input_length is not None:
            kwargs.setdefault("input_shape", (int(input_length),))
        super().__init__(**kwargs)
        for what, value in (("input_dim", input_dim), ("output_dim", output_dim)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"Embedding {what} must be a positive integer, got {value!r}")
        self.input_dim = int(input_dim)
        self.output_dim = int(output_dim)
        if not isinstance(mask_zero, (bool, np.bool_)):
            raise ConfigError(f"Embedding mask_zero must be True or False, got {mask_zero!r}")
        self.mask_zero = bool(mask_zero)
        self.embeddings_initializer = initializers.get(embeddings_initializer)

    @property
    def vocabulary(self) -> int:
        return self.input_dim

    @property
    def dim(self) -> int:
        return self.output_dim

    def compute_output_shape(self, input_shape, *, reverse=False):
        if reverse:
            return self.reverse_output_shape(input_shape)
        return (*input_shape, self.output_dim)

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        shape = (self.input_dim, self.output_dim)
        self.add_param("embeddings", self.embeddings_initializer(shape, self.input_dim, self.output_dim, rng,
                                                                 self.dtype))

    def indices(self, x: np.ndarray) -> np.ndarray:
        """``x`` as an ``intp`` index array, after checking that every entry is an integer in range."""
        return token_indices(self, x, self.input_dim, "input_dim")

    def forward(self, x, *, training=False, cache=None, reverse=False):
        if reverse:
            return self.project(x, cache)
        self.check_input(x)
        idx = self.indices(x)
        if cache is not None:
            cache["idx"] = idx
        return self.params["embeddings"][idx]

    def backward(self, grad, cache):
        if "hidden" in cache:
            return self.backward_projection(grad, cache)
        g = self.grads["embeddings"]
        g[...] = 0
        scatter_add_rows(g, cache["idx"].reshape(-1), np.ascontiguousarray(grad).reshape(-1, self.output_dim))
        return None

    def get_config(self):
        config = {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
        }
        if self.mask_zero:
            config["mask_zero"] = True
        return config

    def __repr__(self) -> str:
        return f"Embedding({self.input_dim}, {self.output_dim}{', mask_zero=True' if self.mask_zero else ''})"
