"""The model-level methods a Keras user reaches for, shared by every model class.

:class:`KerasMethods` is a mixin: ``save``, ``count_params``, ``get_layer``, the ``weights``,
``trainable_weights`` and ``non_trainable_weights`` lists and ``summary`` (with Keras's lines of totals).
It is written against this much of the model that inherits it, and nothing else:

``layers``
    every layer of the model once, in the order of ``get_weights``;
``built``
    whether the layers have their weights;
``name`` and ``dtype``
    the model's name (or ``None``) and its float dtype;
``require_built(what)``
    raises :class:`~barenet.errors.NotFittedError` naming ``what`` unless the model is built.

A layer's weights are its ``params`` (trainable) then its ``buffers`` (non-trainable state such as
batch normalization's moving statistics), as in :meth:`barenet.layers.Layer.weights`. A model may
override :meth:`KerasMethods.layer_names` (the names ``get_layer`` finds and ``summary`` shows) and
:meth:`KerasMethods.summary_rows` (the table, with columns of its own, such as a graph's inputs of each
layer); ``summary`` formats whatever rows it gets and adds the totals.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..errors import ConfigError, ModelFileError
from ..layers import Layer
from ..layers.base import weights_of


class KerasMethods:
    """Keras's model methods, for any model providing the attributes listed in :mod:`barenet.models.keras_api`."""

    layers: list[Layer]
    built: bool
    name: str | None
    dtype: np.dtype

    # ----------------------------------------------------------------- files
    def save(self, filepath: str | os.PathLike, *, overwrite: bool = True) -> None:
        """Write the model to ``filepath`` in barenet's format: the same as :func:`barenet.save` (read it back
        with :func:`barenet.load_model` or :func:`barenet.load`).

        The file is a zip archive of JSON and ``.npy`` arrays, named by convention ``*.barenet``. A name
        ending in ``.keras``, ``.h5`` or ``.hdf5`` (Keras's formats) or ``.onnx`` is refused with a
        :class:`~barenet.errors.ModelFileError` rather than given a file of another format.
        ``overwrite=False`` refuses to replace an existing file (Keras asks instead).
        """
        from ..io import save  # here, not at the top: barenet.io imports the models

        if not overwrite and os.path.exists(filepath):
            raise ModelFileError(f"{os.fspath(filepath)!r} exists and overwrite=False; choose another name or "
                                 "pass overwrite=True")
        save(self, filepath)

    # ----------------------------------------------------------------- layers
    def layer_names(self) -> list[str]:
        """Each layer's name, as :meth:`summary` shows it and :meth:`get_layer` finds it: the name it was given,
        else its class in lower case and its index (``"dense_0"``)."""
        return [layer.name or f"{type(layer).__name__.lower()}_{i}" for i, layer in enumerate(self.layers)]

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """The layer called ``name`` (see :meth:`layer_names`) or at position ``index`` (negative counts from
        the end), as in Keras; give exactly one of the two.

        Raises
        ------
        ConfigError
            Both or neither given, an index out of range or a name no layer has (the message lists the names).
        """
        if (name is None) == (index is None):
            raise ConfigError(f"get_layer takes a layer name or an index, exactly one of the two; got name={name!r}, "
                              f"index={index!r}")
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
                raise ConfigError(f"get_layer index must be an integer, got {index!r}")
            if not -len(self.layers) <= index < len(self.layers):
                raise ConfigError(f"get_layer index {index} is out of range: the model has {len(self.layers)} layers "
                                  f"(indices 0 to {len(self.layers) - 1}, or -{len(self.layers)} to -1)")
            return self.layers[int(index)]
        names = self.layer_names()
        for layer_name, layer in zip(names, self.layers, strict=True):
            if layer_name == name:
                return layer
        raise ConfigError(f"the model has no layer named {name!r}; its layers are {names}")

    # ----------------------------------------------------------------- weights
    @property
    def weights(self) -> list[np.ndarray]:
        """Every weight of every layer, in :meth:`get_weights` order: each layer's trainable parameters, then its
        non-trainable buffers.

        These are the model's arrays themselves (views into the packed parameter array), not copies, as Keras
        returns its variables: ``model.weights[0][...] = 0`` changes the model, and an array read here follows
        training. They stay the model's arrays until a layer is added to the built model (which lays the
        parameters out again). ``get_weights()`` gives copies.
        """
        self.require_built("weights")
        return [w for layer in self.layers for w in weights_of(layer)]

    @property
    def trainable_weights(self) -> list[np.ndarray]:
        """The parameters the optimizer updates (``layer.params`` of every layer), live as in :attr:`weights`."""
        self.require_built("trainable_weights")
        return [w for layer in self.layers for w in layer.params.values()]

    @property
    def non_trainable_weights(self) -> list[np.ndarray]:
        """The state no optimizer updates (``layer.buffers``: batch normalization's moving mean and variance),
        live as in :attr:`weights`."""
        self.require_built("non_trainable_weights")
        return [w for layer in self.layers for w in layer.buffers.values()]

    def count_params(self) -> int:
        """Number of scalars in all weights, trainable and not (Keras's count; ``n_params`` counts only the
        trainable ones)."""
        self.require_built("count_params")
        return sum(int(w.size) for w in self.weights)

    # ----------------------------------------------------------------- description
    def summary_rows(self) -> list[tuple[str, ...]]:
        """The table of :meth:`summary`: a header, then one row per layer (name and type, output shape, number of
        weights, trainable and not, as Keras counts them; ``"?"`` where the layer is not built yet)."""
        rows: list[tuple[str, ...]] = [("Layer (type)", "Output shape", "Params")]
        for label, layer in zip(self.layer_names(), self.layers, strict=True):
            if layer.built:
                shape = "(None, " + ", ".join(map(str, layer.output_shape)) + ")"
                count = f"{sum(int(w.size) for w in weights_of(layer)):,}"
            else:
                shape = count = "?"
            rows.append((f"{label} ({layer!r})", shape, count))
        return rows

    def summary(self, print_fn: Any = print) -> str:
        """Print (and return) the table of layers, output shapes and weight counts, then Keras's totals:
        ``Total params``, ``Trainable params`` (what the optimizer updates) and ``Non-trainable params``
        (batch normalization's moving statistics), each with its size in memory.

        ``print_fn=None`` only returns the text.
        """
        rows = self.summary_rows()
        columns = len(rows[0])
        widths = [max(len(r[c]) for r in rows) for c in range(columns)]
        line = "-" * (sum(widths) + 2 * (columns - 1))
        text = [f"Model: {self.name or type(self).__name__.lower()} (dtype {np.dtype(self.dtype).name})", line]
        for j, r in enumerate(rows):
            cells = [f"{r[c]:<{widths[c]}}" for c in range(columns - 1)] + [f"{r[-1]:>{widths[-1]}}"]
            text.append("  ".join(cells))
            if j == 0:
                text.append(line)
        text.append(line)
        if self.built:
            trainable = sum(int(w.size) for w in self.trainable_weights)
            frozen = sum(int(w.size) for w in self.non_trainable_weights)
            size = np.dtype(self.dtype).itemsize
            text += [f"Total params: {trainable + frozen:,} ({_readable_bytes((trainable + frozen) * size)})",
                     f"Trainable params: {trainable:,} ({_readable_bytes(trainable * size)})",
                     f"Non-trainable params: {frozen:,} ({_readable_bytes(frozen * size)})"]
        else:
            text.append("Not built yet")
        out = "\n".join(text)
        if print_fn is not None:
            print_fn(out)
        return out


def _readable_bytes(n: float) -> str:
    """``"4.82 KB"``: bytes in units of 1024, two decimals, as Keras's summary writes them."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024:
            return f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} PB"
