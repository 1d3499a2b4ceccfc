"""Gradient health per layer: :class:`GradientMonitor`, and the per-step figures it and TensorBoard share.

Two figures per layer (every parameter of the layer together), averaged over the steps of an epoch:

``gradient_norm``
    :math:`\\|g\\|_2 = \\sqrt{\\sum_k \\|g_k\\|^2}` over the layer's gradient arrays :math:`g_k`, as the
    optimizer applied them (after ``clipnorm``/``global_clipnorm``, L2 penalty included).
``update_ratio``
    :math:`\\|W_t - W_{t-1}\\|_2 / \\|W_{t-1}\\|_2`, the size of one optimizer step relative to the
    weights it changed. A rule of thumb for plain SGD and Adam alike is about ``1e-3``: much smaller and
    the layer barely learns, near 1 and each step rewrites the layer.

Both are read from the model's own arrays after each step: the gradients the backward pass left in
``layer.grads`` (the training loop hands the same arrays to the optimizer) and the parameters the optimizer
updated. The previous step's parameters are copied into the monitor, never kept on a layer.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from .errors import ConfigError
from .models.callbacks import Callback


class GradientWarning(UserWarning):
    """A layer's gradients vanished or exploded during training (see :class:`GradientMonitor`)."""


class LayerStepStatistics:
    """Running means of each layer's gradient norm and update-to-weight ratio over a run of optimizer steps.

    Parameters
    ----------
    model : Sequential or Model
        Built; its layers with parameters are watched, named as :meth:`~barenet.Sequential.layer_names`
        names them (``dense_0`` in a Sequential, the layer's own name in a functional model).

    Call :meth:`record` after each optimizer step and :meth:`means` at the end of the run; :meth:`reset`
    starts a new run from the parameters as they are. Memory: one copy of the trainable parameters and a
    float64 scratch array the size of the largest one.
    """

    def __init__(self, model: Any) -> None:
        names = model.layer_names()
        #: ``(name, params, grads)`` of each layer with parameters: its parameter and gradient arrays by name
        self.layers = [(names[i], dict(layer.params), dict(layer.grads))
                       for i, layer in enumerate(model.layers) if layer.params]
        self.reset()

    @property
    def names(self) -> list[str]:
        """The watched layers' names, in the model's order."""
        return [name for name, _, _ in self.layers]

    def reset(self) -> None:
        """Start a new run: forget the sums and take the parameters as they are now as the step's start."""
        self._before = [[p.copy() for p in params.values()] for _, params, _ in self.layers]
        largest = max((p for _, params, _ in self.layers for p in params.values()), key=np.size,
                      default=np.empty(0))
        self._scratch = np.empty(largest.size, dtype=np.float64)
        self._grad_sum = np.zeros(len(self.layers))
        self._ratio_sum = np.zeros(len(self.layers))
        self.steps = 0

    def record(self) -> None:
        """Add the step just taken: each layer's gradient norm, and its parameter change relative to its
        parameters before the step."""
        for i, (_, params, grads) in enumerate(self.layers):
            self._grad_sum[i] += math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
            moved = weight = 0.0
            for p, before in zip(params.values(), self._before[i], strict=True):
                difference = self._scratch[:p.size].reshape(p.shape)
                np.subtract(p, before, out=difference)
                moved += float(np.vdot(difference, difference))
                weight += float(np.vdot(before, before))
                before[...] = p
            self._ratio_sum[i] += math.sqrt(moved / weight) if weight > 0 else math.nan
        self.steps += 1

    def means(self) -> tuple[dict[str, float], dict[str, float]]:
        """``(gradient_norm, update_ratio)``: per layer name, the mean over the steps recorded (NaN without any)."""
        steps = self.steps or math.nan
        return ({name: float(s / steps) for name, s in zip(self.names, self._grad_sum, strict=True)},
                {name: float(s / steps) for name, s in zip(self.names, self._ratio_sum, strict=True)})


class GradientMonitor(Callback):
    """Record each layer's gradient norm and update-to-weight ratio per epoch; warn when gradients vanish or
    explode, naming the layer.

    Parameters
    ----------
    vanishing : float
        A layer's gradients count as vanished in an epoch when its mean gradient norm is below ``vanishing``
        times the largest layer's that epoch (default ``1e-3``: a thousand times smaller). The figure is
        relative so that it does not depend on the loss's scale: in a deep sigmoid network each layer's
        gradient is about a quarter of the next one's, and the first layers fall below it; with ReLU and
        batch normalization the layers stay within a factor of ten of each other.
    exploding : float
        A layer's gradients count as exploded when their mean norm exceeds ``exploding`` (default ``1e3``)
        or is NaN or infinite.
    warn : bool
        Issue a :class:`GradientWarning` (once per layer and kind, at the first epoch it happens); the
        messages are kept in :attr:`warnings` either way.

    Attributes
    ----------
    gradient_norm, update_ratio : dict of str to list of float
        Per layer name, one value per epoch (the mean over the epoch's steps; see
        :mod:`barenet.gradient_monitor` for the definitions).
    epochs : list of int
        The 0-based epochs recorded, as in :class:`~barenet.History`.
    warnings : list of str
        The messages of the vanished and exploded layers, in the order they were found.

    Notes
    -----
    Each step costs a few passes over the parameters and gradients (norms, the parameter change, a copy of
    the parameters for the next step's change).

    Examples
    --------
    >>> monitor = bn.callbacks.GradientMonitor()
    >>> model.fit(X, y, epochs=5, callbacks=[monitor])          # doctest: +SKIP
    >>> monitor.gradient_norm["dense_0"]                         # doctest: +SKIP
    [3.1e-06, 2.9e-06, ...]
    """

    def __init__(self, vanishing: float = 1e-3, exploding: float = 1e3, warn: bool = True) -> None:
        for name, value in (("vanishing", vanishing), ("exploding", exploding)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 < value < math.inf:
                raise ConfigError(f"GradientMonitor {name} must be a positive finite number, got {value!r}")
        if not vanishing < 1:
            raise ConfigError(f"GradientMonitor vanishing is a fraction of the largest layer's gradient norm and "
                              f"must be below 1, got {vanishing!r}")
        self.vanishing = float(vanishing)
        self.exploding = float(exploding)
        self.warn = bool(warn)
        self.gradient_norm: dict[str, list[float]] = {}
        self.update_ratio: dict[str, list[float]] = {}
        self.epochs: list[int] = []
        self.warnings: list[str] = []

    def on_train_begin(self, logs=None):
        self._stats = LayerStepStatistics(self.model)
        self.gradient_norm = {name: [] for name in self._stats.names}
        self.update_ratio = {name: [] for name in self._stats.names}
        self.epochs, self.warnings = [], []
        self._warned: set[tuple[str, str]] = set()

    def on_epoch_begin(self, epoch, logs=None):
        self._stats.reset()

    def on_batch_end(self, batch, logs=None):
        self._stats.record()

    def on_epoch_end(self, epoch, logs=None):
        norms, ratios = self._stats.means()
        for name in self._stats.names:
            self.gradient_norm[name].append(norms[name])
            self.update_ratio[name].append(ratios[name])
        self.epochs.append(epoch)
        for kind, name, text in self._findings(epoch, norms):
            if (kind, name) in self._warned:
                continue
            self._warned.add((kind, name))
            self.warnings.append(text)
            if self.warn:
                warnings.warn(text, GradientWarning, stacklevel=2)

    def _findings(self, epoch: int, norms: dict[str, float]) -> list[tuple[str, str, str]]:
        """``(kind, layer, message)`` of each layer whose gradients vanished or exploded in ``epoch``."""
        found = []
        finite = {name: value for name, value in norms.items() if math.isfinite(value)}
        for name, value in norms.items():
            if not math.isfinite(value) or value > self.exploding:
                found.append(("exploding", name, (
                    f"gradients explode in layer {name!r} at epoch {epoch + 1}: mean gradient norm {value:.3g} "
                    f"(above exploding={self.exploding:g}); try a smaller learning rate, gradient clipping "
                    "(clipnorm) or scaled inputs and targets")))
        if not finite:
            return found
        largest = max(finite, key=finite.__getitem__)
        for name, value in finite.items():
            if value < self.vanishing * finite[largest]:
                found.append(("vanishing", name, (
                    f"gradients vanish in layer {name!r} at epoch {epoch + 1}: mean gradient norm {value:.3g}, "
                    f"{value / finite[largest]:.2g} times the largest ({finite[largest]:.3g}, layer {largest!r}; "
                    f"below vanishing={self.vanishing:g}); try ReLU-like activations with He initialization, batch "
                    "normalization or residual connections")))
        return found

    def records(self) -> dict[str, dict[str, list[float]]]:
        """``{"gradient_norm": {...}, "update_ratio": {...}}``, the figures the command line's report draws."""
        return {"gradient_norm": {k: list(v) for k, v in self.gradient_norm.items()},
                "update_ratio": {k: list(v) for k, v in self.update_ratio.items()}}
