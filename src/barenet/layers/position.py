"""Position information for sequences: a learned table (PositionEmbedding), the fixed sinusoids
(SinusoidalPositionEncoding) and token plus position embeddings in one layer (TokenAndPositionEmbedding).

The first two follow Keras-Hub (``keras_hub.layers.PositionEmbedding`` and ``SinePositionEncoding``): they
take the embedded sequence ``x : (batch, time, features)`` and return the position information broadcast
to ``x``'s shape; they do not add it. The caller adds it, ``x + PositionEmbedding(...)(x)``. The output
does not depend on ``x``'s values, so the input gradient is zero. TokenAndPositionEmbedding (Keras-Hub's
layer of that name) takes token ids and returns the sum, so it also fits a :class:`~barenet.Sequential`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import initializers
from ..errors import ConfigError, ShapeError
from ..kernels.embedding import scatter_add_rows
from .base import Layer, register
from .embedding import Reversible, token_indices


def _positive_int(layer: str, what: str, value: Any) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{layer} {what} must be a positive integer, got {value!r}")
    return int(value)


def _sequence_axes(layer: Layer, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """``(time, features)`` of ``input_shape`` (its last two axes), after checking there are two."""
    if len(input_shape) < 2:
        raise ShapeError(f"{layer.describe()} expects sequences (batch, time, features), got samples of shape "
                         f"{tuple(input_shape)}")
    return input_shape[-2], input_shape[-1]


def _zero_input_grad(grad: np.ndarray, cache) -> np.ndarray | None:
    """dLoss/dInput of a layer whose output does not depend on its input's values."""
    return np.zeros_like(grad) if cache.input_grad else None


@register
class PositionEmbedding(Layer):
    r"""A learned vector per position, broadcast to the input's shape: ``y[b, t] = embeddings[t]``.

    Parameters
    ----------
    sequence_length : int
        The longest sequence the table covers; an input may be shorter (its first ``time`` rows are used).
    initializer : str or callable
        Of the table (default ``"glorot_uniform"``, Keras-Hub's default, with ``fan_in = sequence_length``
        and ``fan_out = features``).

    Shapes
    ------
    ``x : (batch, ..., time, features)`` -> ``y`` of the same shape; ``embeddings : (sequence_length,
    features)``.

    Notes
    -----
    As Keras-Hub's ``PositionEmbedding``, the layer returns the position embeddings only; add them to the
    input yourself. :math:`\partial L/\partial E_t = \sum_b \partial L/\partial y_{bt}` for
    :math:`t <` ``time`` and 0 for the rows the input does not reach. The table is named ``embeddings``, so
    weight decay and an L2 penalty apply to it as to :class:`~barenet.layers.Embedding`'s.
    """

    supports_masking = True

    def __init__(self, sequence_length: int, initializer: str | initializers.Initializer = "glorot_uniform",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sequence_length = _positive_int("PositionEmbedding", "sequence_length", sequence_length)
        # named like every other layer's initializer attribute, so that dry_build and loading find it
        self.embeddings_initializer = initializers.get(initializer)

    def build(self, input_shape, rng, dtype="float32"):
        time, features = _sequence_axes(self, input_shape)
        if time > self.sequence_length:
            raise ShapeError(f"{self.describe()} covers {self.sequence_length} positions, got sequences of {time} "
                             f"steps (input shape {tuple(input_shape)}); raise sequence_length")
        super().build(input_shape, rng, dtype)
        shape = (self.sequence_length, features)
        self.add_param("embeddings", self.embeddings_initializer(shape, shape[0], shape[1], rng, self.dtype))

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        y = np.empty(x.shape, dtype=self.dtype)
        y[...] = self.params["embeddings"][:x.shape[-2]]
        return y

    def backward(self, grad, cache):
        time, features = grad.shape[-2:]
        g = self.grads["embeddings"]
        g[...] = 0
        np.sum(grad.reshape(-1, time, features), axis=0, out=g[:time])
        return _zero_input_grad(grad, cache)

    def get_config(self):
        return {**super().get_config(), "sequence_length": self.sequence_length,
                "initializer": initializers.serialize(self.embeddings_initializer)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "initializer" in config:
            config["initializer"] = initializers.deserialize(config["initializer"])
        return super().from_config(config)


@register
class SinusoidalPositionEncoding(Layer):
    r"""The fixed sine and cosine position encoding of Vaswani et al. (2017), broadcast to the input's shape.

    Parameters
    ----------
    max_wavelength : float
        The longest wavelength, :math:`\lambda` below (default 10000, as in the paper and Keras-Hub).

    Shapes
    ------
    ``x : (batch, ..., time, features)`` -> ``y`` of the same shape. No parameters.

    Notes
    -----
    For position :math:`t` and feature :math:`i` of :math:`F`, with :math:`\omega_i = \lambda^{-2\lfloor
    i/2\rfloor / F}`:

    .. math:: y_{t,i} = \sin(t\,\omega_i) \ (i \text{ even}), \qquad y_{t,i} = \cos(t\,\omega_i) \ (i \text{ odd}),

    the interleaved layout of Keras-Hub's ``SinePositionEncoding``, which returns the encoding without adding
    it to the input; so does this layer. The table, ``encoding : (time, features)``, is computed once, at
    build, in float64 and then rounded to the layer's dtype.
    """

    supports_masking = True

    def __init__(self, max_wavelength: float = 10000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(max_wavelength, bool) or not isinstance(max_wavelength, (int, float, np.number)) \
                or not max_wavelength > 0 or not np.isfinite(max_wavelength):
            raise ConfigError(f"SinusoidalPositionEncoding max_wavelength must be a positive number, "
                              f"got {max_wavelength!r}")
        self.max_wavelength = max_wavelength

    def build(self, input_shape, rng, dtype="float32"):
        time, features = _sequence_axes(self, input_shape)
        super().build(input_shape, rng, dtype)
        i = np.arange(features)
        angles = np.arange(time)[:, None] * float(self.max_wavelength) ** (-2.0 * (i // 2) / features)
        self.encoding = np.where(i % 2 == 0, np.sin(angles), np.cos(angles)).astype(self.dtype)

    def forward(self, x, *, training=False, cache=None):
        self.check_input(x)
        y = np.empty(x.shape, dtype=self.dtype)
        y[...] = self.encoding
        return y

    def backward(self, grad, cache):
        return _zero_input_grad(grad, cache)

    def get_config(self):
        return {**super().get_config(), "max_wavelength": self.max_wavelength}


@register
class TokenAndPositionEmbedding(Reversible):
    r"""Token embedding plus learned position embedding: ``y[b, t] = token_embeddings[x[b, t]] +
    position_embeddings[t]``.

    Parameters
    ----------
    vocabulary_size : int
        Valid token ids are ``0 .. vocabulary_size - 1``.
    sequence_length : int
        The longest sequence; an input may be shorter (the first ``time`` positions are used).
    embedding_dim : int
        Length of each vector.
    embeddings_initializer : str or callable
        Of both tables (default ``"uniform"``, on :math:`\pm 0.05`, Keras-Hub's default), drawn token table
        first.
    mask_zero : bool
        Whether id 0 is padding. The output is the same either way; :meth:`compute_mask` then gives the
        positions holding a real token, which a model hands to the layers after this one as
        :class:`~barenet.layers.Embedding`'s (see :mod:`barenet.models.masking`).

    Shapes
    ------
    ``x : (batch, ..., time)`` integer ids (floats holding exact integers are accepted) -> ``(batch, ..., time,
    embedding_dim)``; ``token_embeddings : (vocabulary_size, embedding_dim)``, ``position_embeddings :
    (sequence_length, embedding_dim)``. ``layer(h, reverse=True)`` projects hidden states ``h : (batch, ...,
    embedding_dim)`` onto the token table, ``h @ token_embeddings.T : (batch, ..., vocabulary_size)``, the
    tied output layer of :class:`~barenet.layers.Embedding` (the position table takes no part in it).

    Notes
    -----
    The token gradient is :class:`~barenet.layers.Embedding`'s scatter-add, the position gradient
    :math:`\partial L/\partial P_t = \sum_b \partial L/\partial y_{bt}`; ids are not differentiable, so
    ``backward`` returns ``None``. Both tables' names end in ``embeddings``: weight decay and an L2 penalty
    apply to them.
    """

    takes_indices = True
    table = "token_embeddings"

    def __init__(self, vocabulary_size: int, sequence_length: int, embedding_dim: int, *,
                 embeddings_initializer: str | initializers.Initializer = "uniform", mask_zero: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        name = "TokenAndPositionEmbedding"
        self.vocabulary_size = _positive_int(name, "vocabulary_size", vocabulary_size)
        self.sequence_length = _positive_int(name, "sequence_length", sequence_length)
        self.embedding_dim = _positive_int(name, "embedding_dim", embedding_dim)
        if not isinstance(mask_zero, (bool, np.bool_)):
            raise ConfigError(f"{name} mask_zero must be True or False, got {mask_zero!r}")
        self.mask_zero = bool(mask_zero)
        self.embeddings_initializer = initializers.get(embeddings_initializer)

    @property
    def vocabulary(self) -> int:
        return self.vocabulary_size

    @property
    def dim(self) -> int:
        return self.embedding_dim

    def compute_output_shape(self, input_shape, *, reverse=False):
        if reverse:
            return self.reverse_output_shape(input_shape)
        return (*input_shape, self.embedding_dim)

    def build(self, input_shape, rng, dtype="float32"):
        if not input_shape or input_shape[-1] > self.sequence_length:
            raise ShapeError(f"{self.describe()} covers {self.sequence_length} positions, got token ids of shape "
                             f"{tuple(input_shape)} per sample; the last axis is the sequence")
        super().build(input_shape, rng, dtype)
        for key, rows in (("token_embeddings", self.vocabulary_size), ("position_embeddings", self.sequence_length)):
            shape = (rows, self.embedding_dim)
            self.add_param(key, self.embeddings_initializer(shape, rows, self.embedding_dim, rng, self.dtype))

    def forward(self, x, *, training=False, cache=None, reverse=False):
        if reverse:
            return self.project(x, cache)
        self.check_input(x)
        idx = token_indices(self, x, self.vocabulary_size, "vocabulary_size")
        if cache is not None:
            cache["idx"] = idx
        y = self.params["token_embeddings"][idx]
        y += self.params["position_embeddings"][:x.shape[-1]]
        return y

    def backward(self, grad, cache):
        if "hidden" in cache:
            return self.backward_projection(grad, cache)
        time = grad.shape[-2]
        tokens, positions = self.grads["token_embeddings"], self.grads["position_embeddings"]
        tokens[...] = 0
        scatter_add_rows(tokens, cache["idx"].reshape(-1), np.ascontiguousarray(grad).reshape(-1, self.embedding_dim))
        positions[...] = 0
        np.sum(grad.reshape(-1, time, self.embedding_dim), axis=0, out=positions[:time])
        return None

    def get_config(self):
        return {
            **super().get_config(),
            "vocabulary_size": self.vocabulary_size,
            "sequence_length": self.sequence_length,
            "embedding_dim": self.embedding_dim,
            "embeddings_initializer": initializers.serialize(self.embeddings_initializer),
            "mask_zero": self.mask_zero,
        }
