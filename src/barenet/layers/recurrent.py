r"""Recurrent layers: SimpleRNN, LSTM and GRU, trained by backpropagation through time.

All three share one layout and one life cycle (:class:`Recurrent`):

* ``x : (batch, time, features)`` -> ``(batch, time, units)`` with ``return_sequences=True``,
  else the last hidden state ``(batch, units)``;
* ``kernel : (features, gates * units)`` acts on the input, ``recurrent_kernel : (units, gates * units)``
  on the previous hidden state, ``bias`` is added once; gate blocks are laid side by side along the last axis;
* the input projection :math:`x_t W + b` of every time step is one matrix product before the loop, and the
  weight gradients and :math:`\partial L/\partial x` are products over all steps at once after it;
* the loop over time steps, everything inside it vectorized over the batch, is one call to
  :mod:`barenet.kernels.recurrent` for LSTM and GRU (``reset_after``): per step the product
  :math:`h_{t-1} U` into a preallocated buffer, then the step's element-wise work, so nothing is allocated
  per step. In float32 with numba (and SciPy, whose BLAS the loop calls) the whole loop runs in compiled
  code; on :mod:`barenet.threads`'s threads each thread then runs the recurrence of its own slice of the
  batch, with BLAS on one thread. Otherwise (float64, SimpleRNN, GRU without ``reset_after``) the loop is
  Python's and BLAS keeps its own threads;
* internally arrays are time-major ``(time, batch, ...)`` so that each step reads contiguous memory.

Initial state
-------------
By default the state starts at zeros. Set ``layer.initial_state`` (or pass ``initial_state=`` to
``forward``) to start elsewhere: an array ``(batch, units)`` or ``(units,)`` (shared by every sample) for
SimpleRNN and GRU, a pair ``(h0, c0)`` of such arrays for LSTM. A call given a ``cache`` leaves the last
state in ``cache["final_state"]`` (``h`` ``(batch, units)``, or ``(h, c)`` for LSTM), so a long sequence can be
processed in chunks; after ``backward``, ``cache["initial_state_grad"]`` holds
:math:`\partial L/\partial(\text{initial state})` in the structure and shapes it was given (``None`` when the
state started at zeros).

Regularization
--------------
``l2`` penalizes ``kernel`` and ``recurrent_kernel`` (the model penalizes every parameter whose name ends with
``kernel``), not the bias.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from .. import functional as F
from .. import initializers, threads
from ..errors import ConfigError, ShapeError
from ..kernels import recurrent as kernels
from . import activations
from .base import Cache, Layer, register

StateLike = np.ndarray | tuple[np.ndarray, ...] | list[np.ndarray]


def _state_grads(d_states: list[np.ndarray], shapes: list[tuple[int, ...]] | None
                 ) -> np.ndarray | tuple[np.ndarray, ...] | None:
    """dLoss/d(initial state) in the shapes the state was given in (a shared ``(units,)`` state sums the
    batch); ``None`` when the state started at zeros."""
    if shapes is None:
        return None
    grads = tuple(d if shape == d.shape else d.sum(axis=0) for d, shape in zip(d_states, shapes, strict=True))
    return grads[0] if len(grads) == 1 else grads


def _input_projection(xt: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:math:`x_t W + b` of every time step as one product: ``xt : (time, batch, features)`` ->
    ``(time, batch, width)`` (in blocks of rows on barenet's threads when they split)."""
    T, B, n_in = xt.shape
    x, out = xt.reshape(T * B, n_in), np.empty((T * B, W.shape[1]), dtype=W.dtype)

    def rows(r: slice) -> None:
        np.matmul(x[r], W, out=out[r])
        out[r] += b

    threads.run(rows, threads.parts(T * B, W.size))
    return out.reshape(T, B, W.shape[1])


class Recurrent(Layer):
    """Base class of the recurrent layers; subclasses implement ``_run`` and ``_backprop``.

    Parameters
    ----------
    units : int
        Size of the hidden state.
    return_sequences : bool
        Return the hidden state of every time step ``(batch, time, units)`` instead of the last ``(batch, units)``.
    kernel_initializer, recurrent_initializer, bias_initializer : str or callable
        See :mod:`barenet.initializers`; defaults: Glorot uniform, orthogonal, zeros.
    l2 : float
        Weight penalty :math:`\\lambda(\\|W\\|^2 + \\|U\\|^2)` added to the loss.
    """

    #: Number of gate blocks in the kernels (1 for SimpleRNN, 4 for LSTM, 3 for GRU).
    gates: ClassVar[int] = 1
    #: Names of the state arrays carried between steps.
    state_names: ClassVar[tuple[str, ...]] = ("h",)

    def __init__(
        self,
        units: int,
        *,
        return_sequences: bool = False,
        kernel_initializer: str | initializers.Initializer = "glorot_uniform",
        recurrent_initializer: str | initializers.Initializer = "orthogonal",
        bias_initializer: str | initializers.Initializer = "zeros",
        l2: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        kind = type(self).__name__
        if not isinstance(units, (int, np.integer)) or isinstance(units, bool) or units < 1:
            raise ConfigError(f"{kind} units must be a positive integer, got {units!r}")
        if not isinstance(return_sequences, (bool, np.bool_)):
            raise ConfigError(f"{kind} return_sequences must be True or False, got {return_sequences!r}")
        if not l2 >= 0:
            raise ConfigError(f"{kind} l2 must be >= 0, got {l2!r}")
        self.units = int(units)
        self.return_sequences = bool(return_sequences)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.l2 = float(l2)
        #: Optional starting state; see the module docstring.
        self.initial_state: StateLike | None = None

    # ----------------------------------------------------------------- shapes and parameters
    def compute_output_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ShapeError(f"{self.describe()} expects sequences (batch, time, features); "
                             f"got sample shape {tuple(input_shape)}")
        return (input_shape[0], self.units) if self.return_sequences else (self.units,)

    def bias_shape(self) -> tuple[int, ...]:
        return (self.gates * self.units,)

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        n_in, n, width = self.input_shape[-1], self.units, self.gates * self.units
        self.add_param("kernel", self.kernel_initializer((n_in, width), n_in, width, rng, self.dtype))
        self.add_param("recurrent_kernel", self.recurrent_initializer((n, width), n, width, rng, self.dtype))
        self.add_param("bias", self.bias_initializer(self.bias_shape(), n_in, width, rng, self.dtype))

    # ----------------------------------------------------------------- forward / backward
    def forward(self, x: np.ndarray, *, training: bool = False, cache: Cache | None = None,
                initial_state: StateLike | None = None) -> np.ndarray:
        """Run the recurrence over ``x : (batch, time, features)``.

        ``initial_state`` overrides :attr:`initial_state` for this call; with a ``cache`` the last state is
        left in ``cache["final_state"]``.
        """
        self.check_input(x)
        given = self.initial_state if initial_state is None else initial_state
        states, state_shapes = self._initial_states(x.shape[0], given)
        xt = np.ascontiguousarray(x.transpose(1, 0, 2))
        H, saved = self._run(xt, states)  # H: (time + 1, batch, units), H[0] the initial state
        if cache is not None:
            last = tuple(s[-1] for s in self._state_sequences(H, saved))
            cache.update(saved, xt=xt, H=H, state_shapes=state_shapes,
                         final_state=last[0] if len(last) == 1 else last)
        return H[1:].transpose(1, 0, 2) if self.return_sequences else H[-1]

    def backward(self, grad: np.ndarray, cache: Cache) -> np.ndarray | None:
        xt = cache["xt"]
        dH = np.zeros((xt.shape[0], xt.shape[1], self.units), dtype=self.dtype)
        if self.return_sequences:
            dH[...] = grad.transpose(1, 0, 2)
        else:
            dH[-1] = grad
        dXW, d_states = self._backprop(dH, cache)
        flat = dXW.reshape(-1, dXW.shape[-1])
        threads.matmul_tn(xt.reshape(-1, xt.shape[-1]), flat, out=self.grads["kernel"])
        cache["initial_state_grad"] = _state_grads(d_states, cache["state_shapes"])
        if not cache.input_grad:
            return None
        W = self.params["kernel"]
        dx = np.empty((flat.shape[0], W.shape[0]), dtype=self.dtype)
        threads.run(lambda r: np.matmul(flat[r], W.T, out=dx[r]), threads.parts(len(flat), W.size))
        return dx.reshape(xt.shape).transpose(1, 0, 2)

    def _run(self, xt: np.ndarray, states: list[np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Forward over time-major ``xt : (time, batch, features)``: ``H`` and the arrays backward needs."""
        raise NotImplementedError

    def _backprop(self, dH: np.ndarray, cache: Cache) -> tuple[np.ndarray, list[np.ndarray]]:
        """From dLoss/dh_t ``(time, batch, units)`` (outputs only), fill the recurrent-kernel and bias
        gradients; return dLoss/d(xW + b) ``(time, batch, gates*units)`` and dLoss/d(initial states)."""
        raise NotImplementedError

    def _state_sequences(self, H: np.ndarray, saved: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [H]

    def _compiled_loop(self) -> bool:
        """Whether this layer's time loop runs in compiled code (see the module docstring)."""
        return False

    @property
    def splits_batch(self) -> bool:  # type: ignore[override]
        """Split across barenet's threads (:mod:`barenet.threads`) when the time loop is compiled: each thread
        then runs its own rows' recurrence without Python's GIL."""
        return self._compiled_loop()

    def _rows(self, batch: int, steps: int) -> list[slice]:
        """The batch's row slices for the time loop, one per thread when the loop is compiled and splitting pays
        (the work of a row: its recurrent products, ``steps * units * gates * units`` multiply-adds)."""
        if not (self._compiled_loop() and kernels.compiled_sequences(self.dtype, load=True)):
            return [slice(0, batch)]
        return threads.parts(batch, steps * self.units * self.gates * self.units)

    # ----------------------------------------------------------------- initial state
    def _initial_states(self, batch: int, given: StateLike | None
                        ) -> tuple[list[np.ndarray], list[tuple[int, ...]] | None]:
        """The starting states ``(batch, units)`` and the shapes they were given in (``None``: zeros)."""
        n = len(self.state_names)
        zeros = [np.zeros((batch, self.units), dtype=self.dtype) for _ in range(n)]
        if given is None:
            return zeros, None
        parts = [given] if n == 1 and not isinstance(given, (tuple, list)) else list(given)
        if len(parts) != n:
            raise ConfigError(f"{self.describe()} takes {n} initial state array(s) ({', '.join(self.state_names)}), "
                              f"got {len(parts)}")
        out, shapes = [], []
        for name, part in zip(self.state_names, parts, strict=True):
            a = np.asarray(part, dtype=self.dtype)
            if a.shape not in ((self.units,), (batch, self.units)):
                raise ShapeError(f"{self.describe()} initial state {name!r} must have shape ({batch}, {self.units}) "
                                 f"or ({self.units},), got {a.shape}")
            out.append(np.broadcast_to(a, (batch, self.units)).copy())
            shapes.append(a.shape)
        return out, shapes

    # ----------------------------------------------------------------- config
    def get_config(self):
        return {
            **super().get_config(),
            "units": self.units,
            "return_sequences": self.return_sequences,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "l2": self.l2,
        }

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self._repr_options().items())
        return f"{type(self).__name__}({self.units}{extra})"

    def _repr_options(self) -> dict[str, Any]:
        return {"return_sequences": True} if self.return_sequences else {}


@register
class SimpleRNN(Recurrent):
    r"""Fully connected recurrence :math:`h_t = f(x_t W + h_{t-1} U + b)`.

    Parameters
    ----------
    units : int
    activation : str or Activation
        :math:`f`, default ``"tanh"``.
    **kwargs
        See :class:`Recurrent` (``return_sequences``, initializers, ``l2``, ``input_shape``).

    Shapes
    ------
    ``kernel : (features, units)``, ``recurrent_kernel : (units, units)``, ``bias : (units,)``.

    Notes
    -----
    With :math:`z_t = x_t W + h_{t-1} U + b` and :math:`\delta_t = \partial L/\partial z_t`, backpropagation
    through time runs :math:`t = T..1`: :math:`\partial L/\partial h_t = g_t + \delta_{t+1} U^\top`,
    :math:`\delta_t = \partial L/\partial h_t \odot f'(z_t)`,
    then :math:`\partial L/\partial W = \sum_t x_t^\top \delta_t`, :math:`\partial L/\partial U = \sum_t h_{t-1}^\top
    \delta_t`, :math:`\partial L/\partial b = \sum_t \delta_t`, :math:`\partial L/\partial x_t = \delta_t W^\top`,
    where :math:`g_t` is the gradient arriving at the output :math:`h_t`.
    """

    def __init__(self, units: int, activation: str | activations.Activation = "tanh", **kwargs: Any) -> None:
        super().__init__(units, **kwargs)
        # Kept private: a public ``activation`` would make the model try to fuse it with the loss.
        self._activation = activations.get(activation)

    def _run(self, xt, states):
        W, U, b = self.params["kernel"], self.params["recurrent_kernel"], self.params["bias"]
        XW = _input_projection(xt, W, b)
        H = np.empty((xt.shape[0] + 1, xt.shape[1], self.units), dtype=self.dtype)
        H[0] = states[0]
        hu = np.empty_like(H[0])
        for t in range(xt.shape[0]):
            np.matmul(H[t], U, out=hu)
            XW[t] += hu  # XW now holds the pre-activations z_t
            H[t + 1] = self._activation.function(XW[t])
        return H, {"Z": XW}

    def _backprop(self, dH, cache):
        U = self.params["recurrent_kernel"]
        Z, H = cache["Z"], cache["H"]
        dZ = np.empty_like(Z)
        dh = np.zeros_like(dH[0])
        for t in range(Z.shape[0] - 1, -1, -1):
            dh += dH[t]
            step = Cache()
            self._activation.forward(Z[t], cache=step)
            dZ[t] = self._activation.backward(dh, step)
            dh = dZ[t] @ U.T
        flat = dZ.reshape(-1, self.units)
        np.matmul(H[:-1].reshape(-1, self.units).T, flat, out=self.grads["recurrent_kernel"])
        np.sum(flat, axis=0, out=self.grads["bias"])
        return dZ, [dh]

    def get_config(self):
        return {**super().get_config(), "activation": activations.serialize(self._activation)}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["activation"] = activations.deserialize(config.get("activation", "tanh"))
        return super().from_config(config)

    def _repr_options(self):
        act = self._activation.kind
        return {**({"activation": act} if act != "tanh" else {}), **super()._repr_options()}


@register
class LSTM(Recurrent):
    r"""Long short-term memory (Hochreiter and Schmidhuber, 1997), with a forget gate.

    Parameters
    ----------
    units : int
    unit_forget_bias : bool
        Start the forget-gate bias at 1 so that the cell remembers by default (Jozefowicz et al., 2015).
    **kwargs
        See :class:`Recurrent`.

    Shapes
    ------
    ``kernel : (features, 4*units)``, ``recurrent_kernel : (units, 4*units)``, ``bias : (4*units,)``, gate blocks
    in the order input, forget, cell candidate, output (as in Keras and PyTorch). The state is the pair
    ``(h, c)``.

    Notes
    -----
    With :math:`z_t = x_t W + h_{t-1} U + b = [z^i, z^f, z^g, z^o]`:
    :math:`i = \sigma(z^i)`, :math:`f = \sigma(z^f)`, :math:`g = \tanh(z^g)`, :math:`o = \sigma(z^o)`,
    :math:`c_t = f \odot c_{t-1} + i \odot g`, :math:`h_t = o \odot \tanh c_t`.

    Backward, with :math:`\bar h = \partial L/\partial h_t` and :math:`\bar c` the gradient flowing into
    :math:`c_t` from step :math:`t+1`: :math:`\bar c \mathrel{+}= \bar h \odot o \odot (1 - \tanh^2 c_t)`, then
    :math:`\bar z^i = \bar c\, g\, i(1-i)`, :math:`\bar z^f = \bar c\, c_{t-1} f(1-f)`,
    :math:`\bar z^g = \bar c\, i (1-g^2)`, :math:`\bar z^o = \bar h \tanh c_t\, o(1-o)`;
    to step :math:`t-1` flow :math:`\bar c\, f` and :math:`\bar z U^\top`.
    """

    gates = 4
    state_names = ("h", "c")

    def __init__(self, units: int, *, unit_forget_bias: bool = True, **kwargs: Any) -> None:
        super().__init__(units, **kwargs)
        self.unit_forget_bias = bool(unit_forget_bias)

    def build(self, input_shape, rng, dtype="float32"):
        super().build(input_shape, rng, dtype)
        if self.unit_forget_bias:
            self.params["bias"][self.units:2 * self.units] = 1

    def _compiled_loop(self):
        return kernels.compiled_sequences(self.dtype)

    def _run(self, xt, states):
        W, U = self.params["kernel"], self.params["recurrent_kernel"]
        n, (T, B) = self.units, xt.shape[:2]
        A = _input_projection(xt, W, self.params["bias"])  # becomes the activated gates [i, f, g, o]
        H = np.empty((T + 1, B, n), dtype=self.dtype)
        C = np.empty_like(H)
        tanh_C = np.empty_like(H[1:])
        hu = np.empty((B, 4 * n), dtype=self.dtype)
        H[0], C[0] = states
        threads.run(lambda r: kernels.lstm_sequence_forward(A, U, H, C, tanh_C, hu, r.start, r.stop),
                    self._rows(B, T))
        return H, {"A": A, "C": C, "tanh_C": tanh_C}

    def _state_sequences(self, H, saved):
        return [H, saved["C"]]

    def _backprop(self, dH, cache):
        U = self.params["recurrent_kernel"]
        A, H, C, tanh_C = cache["A"], cache["H"], cache["C"], cache["tanh_C"]
        n, (T, B) = self.units, A.shape[:2]
        dZ = np.empty_like(A)
        dh = np.zeros_like(dH[0])  # dz_{t+1} U^T: what reaches h_t through the next step
        dc = np.zeros_like(dh)
        threads.run(lambda r: kernels.lstm_sequence_backward(A, U, C, tanh_C, dH, dh, dc, dZ, r.start, r.stop),
                    self._rows(B, T))
        flat = dZ.reshape(-1, 4 * n)
        threads.matmul_tn(H[:-1].reshape(-1, n), flat, out=self.grads["recurrent_kernel"])
        np.sum(flat, axis=0, out=self.grads["bias"])
        return dZ, [dh, dc]

    def get_config(self):
        return {**super().get_config(), "unit_forget_bias": self.unit_forget_bias}


@register
class GRU(Recurrent):
    r"""Gated recurrent unit (Cho et al., 2014).

    Parameters
    ----------
    units : int
    reset_after : bool
        Apply the reset gate after the recurrent product (the PyTorch/cuDNN form, Keras' default) rather than
        before it. With ``reset_after=True`` the layer has separate input and recurrent biases.
    **kwargs
        See :class:`Recurrent`.

    Shapes
    ------
    ``kernel : (features, 3*units)``, ``recurrent_kernel : (units, 3*units)``, gate blocks in the order update,
    reset, candidate (as in Keras); ``bias : (2, 3*units)`` (row 0 input bias, row 1 recurrent bias) when
    ``reset_after`` else ``(3*units,)``.

    Notes
    -----
    With :math:`x_t W + b_x = [a^z, a^r, a^h]` and :math:`h_{t-1} U + b_h = [u^z, u^r, u^h]`:
    :math:`z = \sigma(a^z + u^z)`, :math:`r = \sigma(a^r + u^r)`, and the candidate
    :math:`\tilde h = \tanh(a^h + r \odot u^h)` (``reset_after``) or
    :math:`\tilde h = \tanh(a^h + (r \odot h_{t-1}) U^h)` (no recurrent bias); then
    :math:`h_t = z \odot h_{t-1} + (1 - z) \odot \tilde h`.

    Backward, with :math:`\bar h = \partial L/\partial h_t`: :math:`\bar a^h = \bar h (1-z)(1-\tilde h^2)`,
    :math:`\bar a^z = \bar h (h_{t-1} - \tilde h) z(1-z)`, :math:`\bar a^r = \bar a^h u^h r(1-r)` (or
    :math:`(\bar a^h U^{h\top}) h_{t-1} r(1-r)`); to step :math:`t-1` flow :math:`\bar h z`, the recurrent
    product's :math:`\bar u U^\top` and, before-reset form, :math:`(\bar a^h U^{h\top}) r`.
    """

    gates = 3

    def __init__(self, units: int, *, reset_after: bool = True, **kwargs: Any) -> None:
        super().__init__(units, **kwargs)
        self.reset_after = bool(reset_after)

    def bias_shape(self):
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _compiled_loop(self):
        return self.reset_after and kernels.compiled_sequences(self.dtype)

    def _run(self, xt, states):
        W, U, b = self.params["kernel"], self.params["recurrent_kernel"], self.params["bias"]
        n, T = self.units, xt.shape[0]
        A = _input_projection(xt, W, b[0] if self.reset_after else b)  # becomes the activated [z, r, h~]
        H = np.empty((T + 1, xt.shape[1], n), dtype=self.dtype)
        H[0] = states[0]
        # u^h (reset_after) or r * h_{t-1} (before-reset form): what the backward pass needs per step
        aux = np.empty_like(H[1:])
        if self.reset_after:
            hu = np.empty((xt.shape[1], 3 * n), dtype=self.dtype)
            threads.run(lambda r: kernels.gru_sequence_forward(A, U, b[1], H, aux, hu, r.start, r.stop),
                        self._rows(xt.shape[1], T))
        else:
            for t in range(T):
                a, h = A[t], H[t]
                a[:, :2 * n] = F.sigmoid(a[:, :2 * n] + h @ U[:, :2 * n])
                np.multiply(a[:, n:2 * n], h, out=aux[t])
                a[:, 2 * n:] += aux[t] @ U[:, 2 * n:]
                np.tanh(a[:, 2 * n:], out=a[:, 2 * n:])
                z, hh = a[:, :n], a[:, 2 * n:]
                np.add(hh, z * (h - hh), out=H[t + 1])
        return H, {"A": A, "aux": aux}

    def _backprop(self, dH, cache):
        U = self.params["recurrent_kernel"]
        A, H, aux = cache["A"], cache["H"], cache["aux"]
        n = self.units
        dXW = np.empty_like(A)
        dHU = np.empty_like(A) if self.reset_after else None
        dh = np.zeros_like(dH[0])
        if self.reset_after:
            dhz = np.zeros_like(dh)  # dh_{t+1} z_{t+1}: what reaches h_t directly; dh holds du_{t+1} U^T
            threads.run(lambda r: kernels.gru_sequence_backward(A, U, H, aux, dH, dh, dhz, dXW, dHU, r.start, r.stop),
                        self._rows(A.shape[1], A.shape[0]))
        else:
            for t in range(A.shape[0] - 1, -1, -1):
                a, h, da = A[t], H[t], dXW[t]
                z, r, hh = a[:, :n], a[:, n:2 * n], a[:, 2 * n:]
                dh += dH[t]
                da[:, 2 * n:] = dh * (1 - z) * (1 - hh * hh)
                da[:, :n] = dh * (h - hh) * z * (1 - z)
                d_rh = da[:, 2 * n:] @ U[:, 2 * n:].T
                da[:, n:2 * n] = d_rh * h * r * (1 - r)
                dh = dh * z + d_rh * r + da[:, :2 * n] @ U[:, :2 * n].T
        H_prev = H[:-1].reshape(-1, n)
        gU, gb = self.grads["recurrent_kernel"], self.grads["bias"]
        if self.reset_after:
            threads.matmul_tn(H_prev, dHU.reshape(-1, 3 * n), out=gU)
            gb[0] = dXW.sum(axis=(0, 1))
            gb[1] = dHU.sum(axis=(0, 1))
        else:
            np.matmul(H_prev.T, dXW[..., :2 * n].reshape(-1, 2 * n), out=gU[:, :2 * n])
            np.matmul(aux.reshape(-1, n).T, dXW[..., 2 * n:].reshape(-1, n), out=gU[:, 2 * n:])
            np.sum(dXW, axis=(0, 1), out=gb)
        return dXW, [dh]

    def get_config(self):
        return {**super().get_config(), "reset_after": self.reset_after}

    def _repr_options(self):
        return {**super()._repr_options(), **({} if self.reset_after else {"reset_after": False})}
