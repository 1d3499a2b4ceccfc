"""Embedding: a lookup table from integer token ids to dense vectors."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import initializers
from ..errors import ConfigError, DataError
from .base import Layer, register


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


@register
class Embedding(Layer):
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

    Shapes
    ------
    ``x : (batch, time)`` integer ids (a model passes them as ``int64``; floats holding exact integers are
    accepted) -> ``y : (batch, time, output_dim)`` in the model's dtype;
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

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.output_dim)

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        shape = (self.input_dim, self.output_dim)
        self.add_param("embeddings", self.embeddings_initializer(shape, self.input_dim, self.output_dim, rng,
                                                                 self.dtype))

    def indices(self, x: np.ndarray) -> np.ndarray:
        """``x`` as an ``intp`` index array, after checking that every entry is an integer in range."""
        return token_indices(self, x, self.input_dim, "input_dim")

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        idx = self.indices(x)
        if cache is not None:
            cache["idx"] = idx
        return self.params["embeddings"][idx]

    def backward(self, grad, cache):
        g = self.grads["embeddings"]
        g[...] = 0
        np.add.at(g, cache["idx"].reshape(-1), grad.reshape(-1, self.output_dim))
        return None

    def compute_mask(self, x, mask=None):
        """``x != 0`` ``(batch, time)``, True at real tokens, with ``mask_zero``; else ``None``."""
        return np.asarray(x) != 0 if self.mask_zero else None

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
