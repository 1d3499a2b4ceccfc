r"""Padding masks carried through a network, as Keras carries them.

A mask is a boolean ``(batch, time)`` array, True at the real steps of a sequence batch ``(batch, time, ...)``.
:class:`~barenet.layers.Embedding` (and :class:`~barenet.layers.TokenAndPositionEmbedding`) with
``mask_zero=True`` makes one from its ids; each later layer's :meth:`~barenet.layers.Layer.compute_mask` gives
its output's mask (see :mod:`barenet.layers.base`). A model computes the masks from its inputs during the same
call as the outputs and keeps them in that call's local variables, never on a layer.

Which tensors carry a mask is known when a model is made: this module runs each layer's ``compute_mask`` on
one memory-free sample of zeros, so a layer that cannot honour a mask is refused then, with its name and the
layer the mask comes from. Where a mask ends at a model's output, the loss and the metrics count only the real
steps (:func:`step_weights`, :func:`real_steps`), with Keras's normalization:

.. math:: L = \frac{\sum_{b,t} m_{bt}\, w_b\, \ell_{bt}}{\sum_{b,t} m_{bt}}

for per-step losses :math:`\ell_{bt}`, mask :math:`m` and sample weights :math:`w` (1 when not given); a batch
without a real step has loss 0.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..layers.base import Layer


def takes_mask(layer: Any) -> bool:
    """Whether ``layer.forward`` takes a ``mask`` keyword argument (the layer then uses the mask itself)."""
    return _has_mask_argument(type(layer).forward)


@functools.cache
def _has_mask_argument(forward: Callable[..., Any]) -> bool:
    return "mask" in inspect.signature(forward).parameters


def call_mask(layer: Any, x: Any, mask: Any, options: Mapping[str, Any]) -> Any:
    """``layer.compute_mask(x, mask)`` for a graph call with keyword ``options``: those that ``compute_mask``
    names among its parameters are handed to it (``Embedding``'s ``reverse``), the others left out."""
    named = _mask_options(type(layer).compute_mask)
    return layer.compute_mask(x, mask, **{k: v for k, v in options.items() if k in named})


@functools.cache
def _mask_options(compute_mask: Callable[..., Any]) -> frozenset[str]:
    return frozenset(p.name for p in inspect.signature(compute_mask).parameters.values() if p.kind is p.KEYWORD_ONLY)


def output_mask_origin(layer: Any, shapes: Sequence[tuple[int, ...]], integer: Sequence[bool],
                       origins: Sequence[Any], single: bool, out_shape: tuple[int, ...],
                       options: Mapping[str, Any] | None = None) -> Any:
    """The layer whose mask ``layer``'s output carries (``layer`` itself when it makes one), or ``None``.

    ``shapes``, ``integer`` and ``origins`` describe the inputs (sample shape, whether they hold ids, where
    their mask comes from or ``None``); ``options`` are the call's keyword options. Raises a
    :class:`~barenet.errors.ConfigError` naming ``layer`` when a masked input reaches a layer that cannot honour
    the mask, or when the layer makes a mask that is not ``(batch, time)`` for its output.
    """
    source = next((o for o in origins if o is not None), None)
    if source is not None and not getattr(layer, "supports_masking", False):
        raise ConfigError(
            f"{layer.describe()} cannot honour the padding mask that {source.describe()} puts "
            f"on its input. Layers that use or pass on a mask: Dense, the activations, Dropout, "
            f"LayerNormalization, the merges, MultiHeadAttention, GlobalAveragePooling1D; pool or attend over "
            f"the sequence before {type(layer).__name__}, or make {type(source).__name__} with mask_zero=False")
    compute = getattr(layer, "compute_mask", None)
    if compute is None or source is None and type(layer).compute_mask is Layer.compute_mask:
        return None  # the default makes no mask from unmasked inputs (and most layers keep it)
    xs = [np.broadcast_to(np.zeros((), np.int64 if i else np.float64), (1, *s)) for s, i in
          zip(shapes, integer, strict=True)]
    masks = [None if o is None else np.ones((1, s[0]), dtype=bool) for s, o in zip(shapes, origins, strict=True)]
    mask = call_mask(layer, xs[0] if single else xs, masks[0] if single else masks, options or {})
    if mask is None:
        return None
    if len(out_shape) < 2 or np.shape(mask) != (1, out_shape[0]) or np.asarray(mask).dtype != bool:
        raise ConfigError(f"{layer.describe()} makes a padding mask of shape {(None, *np.shape(mask)[1:])} for its "
                          f"output {(None, *out_shape)}; a padding mask is boolean (batch, time) for a sequence "
                          f"(batch, time, features)")
    return source if source is not None else layer


def step_weights(mask: np.ndarray, sample_weight: np.ndarray | None, dtype: Any) -> np.ndarray:
    r"""Per-step weights ``(batch, time)`` that make a loss's mean over all steps the mean over the real ones.

    :math:`m_{bt}\, w_{bt}\, BT / \sum m` (0 everywhere when no step is real), with ``sample_weight`` ``w``
    given per sample ``(batch,)`` (each step of a sample weighs as the sample) or per step ``(batch, time)``;
    a loss averaging ``w_{bt} \ell_{bt}`` over the ``BT`` steps then gives the formula of the module docstring.
    """
    m = mask.astype(dtype)
    real = float(m.sum())
    m *= m.dtype.type(m.size / real) if real else 0
    if sample_weight is None:
        return m
    w = np.asarray(sample_weight, dtype=dtype)
    return m * (w[:, None] if w.ndim == 1 else w)


def real_steps(y_true: Any, y_pred: Any, mask: np.ndarray | None) -> tuple[Any, Any]:
    """``(y_true, y_pred)`` at the real steps of ``mask`` only, each step a sample (the form the metrics take):
    ``(n, time, ...)`` arrays become ``(real steps, ...)``. Without a mask, the arrays as they are."""
    if mask is None:
        return y_true, y_pred
    return np.asarray(y_true)[mask], np.asarray(y_pred)[mask]


def layers_using_masks(model: Any) -> list[Any]:
    """The layers of a built ``model`` (Sequential or graph) that receive a padding mask and use it, so that
    their outputs depend on it (MultiHeadAttention, GlobalAveragePooling1D), in calling order."""
    if hasattr(model, "nodes"):
        return [node.layer for node in model.nodes if any(t.masked for t in node.inputs) and takes_mask(node.layer)]
    origins = [None, *(getattr(model, "mask_origins", None) or [None] * len(model.layers))]
    return [layer for layer, origin in zip(model.layers, origins, strict=False)
            if origin is not None and takes_mask(layer)]
