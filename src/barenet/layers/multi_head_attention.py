r"""Multi-head attention, with Keras's names, call signature and weight layout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import initializers, threads
from ..attention import attention_backward_parts, attention_parts
from ..errors import ConfigError, ShapeError
from ..kernels.heads import heads_first, heads_last
from .base import Cache, Layer, register

#: A step of a call's work on a block of the batch (see ``MultiHeadAttention.forward``).
Part = Callable[[slice], Any]

_PROJECTIONS = ("query", "key", "value")
#: Where each projection's input stands in a call's inputs ``[query, value, key(, attention_mask)]``.
_POSITIONS = {"query": 0, "value": 1, "key": 2}


@register
class MultiHeadAttention(Layer):
    r"""Attention from a query sequence to a value sequence, in ``num_heads`` heads of their own projections.

    Parameters
    ----------
    num_heads : int
    key_dim : int
        Size of each head's queries and keys.
    value_dim : int, optional
        Size of each head's values (default ``key_dim``).
    dropout : float in [0, 1)
        Dropout on the attention weights, in training.
    use_bias : bool
    output_shape : int, optional
        Width of the output (default: the query's last axis).
    kernel_initializer, bias_initializer : str or callable
        See :mod:`barenet.initializers` (Glorot uniform and zeros, as Keras).

    Calling
    -------
    ``layer(query, value, key=None, attention_mask=None, use_causal_mask=False)`` on symbolic tensors in the
    functional API: ``query : (batch, T, d_q)``, ``value : (batch, S, d_v)``, ``key : (batch, S, d_k)``
    (default ``value``), ``attention_mask : (batch, T, S)`` with 1/True where query ``i`` may attend to
    key ``j`` (it may be a model input); self-attention is ``layer(x, x)``. Output ``(batch, T, output_shape)``.
    On arrays the same call runs the layer in inference mode; ``return_attention_scores=True`` then also
    returns the weights ``(batch, heads, T, S)``.

    Padding masks (:mod:`barenet.models.masking`), as in Keras: when the query carries a mask ``(batch, T)``
    and the value (or key) one ``(batch, S)``, query ``i`` attends to key ``j`` only where both are real steps,
    combined by logical and with ``attention_mask`` and the causal mask. The output carries the query's mask.
    A padded query attends to nothing: its weights are zeros and its output is ``output_bias`` (Keras gives
    such rows other values, which no later masked layer or masked loss reads).

    Weights (Keras's layout): ``query_kernel : (d_q, heads, key_dim)``, ``key_kernel : (d_k, heads, key_dim)``,
    ``value_kernel : (d_v, heads, value_dim)``, ``output_kernel : (heads, value_dim, out)`` and their biases
    ``query_bias : (heads, key_dim)`` ... ``output_bias : (out,)``.

    Notes
    -----
    Per head :math:`h`: :math:`Q_h = x_q W^Q_h + b^Q_h`, :math:`K_h = x_k W^K_h + b^K_h`,
    :math:`V_h = x_v W^V_h + b^V_h`, :math:`O_h = \mathrm{softmax}(Q_h K_h^\top / \sqrt{d_k} + M) V_h`
    (:func:`barenet.functional.scaled_dot_product_attention`), and
    :math:`y = \sum_h O_h W^O_h + b^O`. Each projection is one matrix product over all heads; backward
    runs the attention's backward pass between the products' transposes.

    The forward's ``forward(inputs, ...)`` takes the list ``[query, value, key]`` (key repeated as ``value``
    when not given, so a graph sums the two gradients), plus the mask as a fourth entry when there is one.
    """

    has_training_mode = True
    supports_masking = True
    #: The attention's many small products (one per batch entry and head) run on barenet's threads, a slice of
    #: the batch each, with BLAS on one thread: BLAS's own threads spend longer handing them out than computing.
    splits_batch = True

    def __init__(self, num_heads: int, key_dim: int, value_dim: int | None = None, dropout: float = 0.0,
                 use_bias: bool = True, output_shape: int | None = None,
                 kernel_initializer: str | initializers.Initializer = "glorot_uniform",
                 bias_initializer: str | initializers.Initializer = "zeros", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for what, value in (("num_heads", num_heads), ("key_dim", key_dim)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"MultiHeadAttention {what} must be a positive integer, got {value!r}")
        if value_dim is not None and (not isinstance(value_dim, (int, np.integer)) or value_dim < 1):
            raise ConfigError(f"MultiHeadAttention value_dim must be a positive integer or None, got {value_dim!r}")
        if isinstance(output_shape, (list, tuple)):
            if len(output_shape) != 1:
                raise ConfigError(f"MultiHeadAttention output_shape must be one width, got {output_shape!r}")
            output_shape = output_shape[0]
        if output_shape is not None and (not isinstance(output_shape, (int, np.integer)) or output_shape < 1):
            raise ConfigError(f"MultiHeadAttention output_shape must be a positive integer, got {output_shape!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"MultiHeadAttention dropout must be in [0, 1), got {dropout!r}")
        self.num_heads = int(num_heads)
        self.key_dim = int(key_dim)
        self.value_dim = int(value_dim) if value_dim is not None else self.key_dim
        self.dropout = float(dropout)
        self.use_bias = bool(use_bias)
        self.out_dim = int(output_shape) if output_shape is not None else None
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)

    # ----------------------------------------------------------------- shapes and parameters
    def _split(self, input_shape: Any) -> list[tuple[int, ...]]:
        if not isinstance(input_shape, (list, tuple)) or not all(isinstance(s, (list, tuple)) for s in input_shape) \
                or len(input_shape) not in (3, 4):
            raise ShapeError(f"{self.describe()} is called as layer(query, value, key=None, attention_mask=None); "
                             f"got inputs of shapes {input_shape}")
        shapes = [tuple(int(d) for d in s) for s in input_shape]
        q, v, k = shapes[:3]
        if len(q) != 2 or len(v) != 2 or len(k) != 2:
            raise ShapeError(f"{self.describe()} takes sequences (batch, time, features); got query {(None, *q)}, "
                             f"value {(None, *v)}, key {(None, *k)}")
        if k[0] != v[0]:
            raise ShapeError(f"{self.describe()} needs key and value of one length; got key {(None, *k)} and value "
                             f"{(None, *v)}")
        if len(shapes) == 4 and shapes[3] != (q[0], v[0]):
            raise ShapeError(f"{self.describe()} expects attention_mask of shape (batch, {q[0]}, {v[0]}), got "
                             f"{(None, *shapes[3])}")
        return shapes

    def compute_output_shape(self, input_shape, **options):
        q = self._split(input_shape)[0]
        return (q[0], self.out_dim or q[1])

    def build(self, input_shape, rng, dtype="float32"):
        shapes = self._split(input_shape)
        self.input_shape = shapes
        self.output_shape = self.compute_output_shape(shapes)
        self.dtype = np.dtype(dtype)
        self.rng = rng
        heads, out = self.num_heads, self.output_shape[-1]
        dims = {"query": self.key_dim, "key": self.key_dim, "value": self.value_dim}
        for name, shape in zip(_PROJECTIONS, (shapes[0], shapes[2], shapes[1]), strict=True):
            width = dims[name]
            self.add_param(f"{name}_kernel", self.kernel_initializer((shape[1], heads, width), shape[1],
                                                                     heads * width, rng, self.dtype))
            if self.use_bias:
                self.add_param(f"{name}_bias", self.bias_initializer((heads, width), shape[1], heads * width, rng,
                                                                     self.dtype))
        self.add_param("output_kernel", self.kernel_initializer((heads, self.value_dim, out), heads * self.value_dim,
                                                                out, rng, self.dtype))
        if self.use_bias:
            self.add_param("output_bias", self.bias_initializer((out,), heads * self.value_dim, out, rng, self.dtype))
        self.built = True

    def check_input(self, xs: Any) -> None:
        if not self.built:
            super().check_input(xs)
        if not isinstance(xs, (list, tuple)) or len(xs) != len(self.input_shape) or any(
                x.shape[1:] != s for x, s in zip(xs, self.input_shape, strict=True)):
            raise ShapeError(f"{self.describe()} expected inputs of shapes {[(None, *s) for s in self.input_shape]}, "
                             f"got {[getattr(x, 'shape', None) for x in xs]}")

    # ----------------------------------------------------------------- calling
    def __call__(self, query: Any, value: Any = None, key: Any = None, attention_mask: Any = None, *,
                 use_causal_mask: bool = False, return_attention_scores: bool = False, training: bool = False) -> Any:
        from ..models import graph

        if value is None:
            raise ConfigError(f"{self.describe()} is called as layer(query, value, ...); for self-attention pass "
                              f"the same tensor twice: layer(x, x)")
        inputs = [query, value, value if key is None else key] + ([] if attention_mask is None else [attention_mask])
        options = {"use_causal_mask": True} if use_causal_mask else {}
        if graph.is_symbolic(inputs):
            if return_attention_scores:
                raise ConfigError(f"{self.describe()}: return_attention_scores is available on arrays (eager calls),"
                                  f" not in a graph, where a call has one output")
            return graph.call_layer(self, inputs, options)
        if not self.built:
            raise ConfigError(f"{self.describe()} is not built; call it on symbolic tensors in a Model, or build it")
        cache = Cache(input_grad=False) if return_attention_scores else None
        y = self.forward(inputs, training=training, cache=cache, use_causal_mask=use_causal_mask)
        return (y, cache["attention"]["probs"]) if return_attention_scores else y

    @staticmethod
    def _groups(xs: list[np.ndarray]) -> list[tuple[int, list[str]]]:
        """The projections grouped by the array they read, as ``(index of that input, names)``: self-attention
        (``layer(x, x)``) projects one array three ways, ``layer(q, v)`` its value twice (key and value)."""
        groups: list[tuple[int, list[str]]] = []
        for name in _PROJECTIONS:
            i = _POSITIONS[name]
            same = next((g for g in groups if xs[g[0]] is xs[i]), None)
            if same is None:
                groups.append((i, [name]))
            else:
                same[1].append(name)
        return groups

    def _kernel(self, names: list[str]) -> np.ndarray:
        """The named projections' kernels side by side, ``(d, sum of heads * width)`` (a view for one name)."""
        kernels = [self.params[f"{n}_kernel"].reshape(self.params[f"{n}_kernel"].shape[0], -1) for n in names]
        return kernels[0] if len(kernels) == 1 else np.concatenate(kernels, axis=1)

    def _projection_parts(self, x: np.ndarray, names: list[str]) -> tuple[list[np.ndarray], Part, int]:
        """``x : (batch, time, d)`` projected to ``[(batch, heads, time, width)]``, one per name, set up:
        ``(outputs, part, work)``, where ``part(rows)`` fills those batch rows of every output with one product
        over all heads and all the named projections of ``x[rows]``, each moved to its heads' layout with its
        bias (:func:`barenet.kernels.heads.heads_first`), and ``work`` is a batch row's work."""
        kernel = self._kernel(names)
        batch, time = x.shape[:2]
        dtype = np.result_type(x, kernel)
        shapes = [self.params[f"{name}_kernel"].shape[1:] for name in names]
        biases = [self.params[f"{name}_bias"] if self.use_bias else np.zeros(shape, dtype)
                  for name, shape in zip(names, shapes, strict=True)]
        out = [np.empty((batch, heads, time, width), dtype=dtype) for heads, width in shapes]

        def part(rows: slice) -> None:
            y = np.matmul(x[rows].reshape(-1, x.shape[-1]), kernel)
            start = 0
            for (heads, width), bias, head_major in zip(shapes, biases, out, strict=True):
                heads_first(y[:, start:start + heads * width].reshape(-1, time, heads, width), bias, head_major[rows])
                start += heads * width

        return out, part, time * kernel.size

    def compute_mask(self, xs, mask=None):
        """The query's padding mask (the output has the query's steps), or ``None``."""
        return None if mask is None else mask[0]

    @staticmethod
    def _allowed(xs: list[np.ndarray], masks: list[np.ndarray | None] | None) -> np.ndarray | None:
        """Where query ``i`` may attend to key ``j``, ``(batch, T, S)`` or a view that broadcasts to it (``None``:
        everywhere): the ``attention_mask`` input and the query, value and key padding masks, and-ed."""
        allowed = None if len(xs) < 4 else np.asarray(xs[3]) != 0
        query_mask, value_mask, key_mask = (masks or [None] * 3)[:3]
        parts = [None if query_mask is None else query_mask[:, :, None],
                 None if value_mask is None else value_mask[:, None, :],
                 None if key_mask is None or key_mask is value_mask else key_mask[:, None, :]]
        for part in parts:
            if part is not None:
                allowed = part if allowed is None else allowed & part
        return allowed

    # A call's work is batch-parallel from the projections to the output: the projections of a block of the
    # batch, attention within those sequences, the output projection of those rows. So each direction hands
    # barenet's threads one part per block for all of it (then the backward pass one more for the kernels'
    # gradients, which sum over the batch), not one per step: each hand-off costs tens of microseconds, and a
    # block's rows are still in cache from one step to the next.
    def forward(self, xs, *, training=False, cache=None, use_causal_mask=False, mask=None):
        """``xs = [query, value, key(, attention_mask)]``; ``mask``: their padding masks, ``None`` entries
        where there is none (a model hands them in)."""
        self.check_input(xs)
        allowed = self._allowed(xs, mask)
        mask = None if allowed is None else allowed[:, None, :, :]
        projected: dict[str, np.ndarray] = {}
        steps: list[tuple[Part, int]] = []
        for i, names in self._groups(xs):
            outputs, part, work = self._projection_parts(xs[i], names)
            projected.update(zip(names, outputs, strict=True))
            steps.append((part, work))
        q, k, v = projected["query"], projected["key"], projected["value"]
        sub = None if cache is None else cache.child("attention")
        rate = self.dropout if training else 0.0
        o, attend, work = attention_parts(q, k, v, mask=mask, causal=bool(use_causal_mask), dropout=rate,
                                          rng=self.rng if rate else None, cache=sub)
        steps.append((attend, work))
        batch, heads, t, dv = o.shape
        o2 = np.empty((batch, t, heads, dv), dtype=o.dtype)  # the heads side by side again
        out_kernel = self.params["output_kernel"].reshape(heads * dv, -1)
        out = np.empty((batch, t, out_kernel.shape[1]), dtype=np.result_type(o, out_kernel))

        def output(rows: slice) -> None:
            heads_last(o[rows], o2[rows])
            np.matmul(o2[rows].reshape(-1, heads * dv), out_kernel, out=out[rows].reshape(-1, out.shape[2]))
            if self.use_bias:
                out[rows] += self.params["output_bias"]

        steps.append((output, t * out_kernel.size))
        threads.run(lambda rows: [step(rows) for step, _ in steps], threads.parts(batch, sum(w for _, w in steps)))
        if cache is not None:
            cache.update(inputs=list(xs[:3]), o2=o2.reshape(batch * t, heads * dv))
        return out

    def backward(self, grad, cache):
        query, value, key = cache["inputs"]
        o2 = cache["o2"]
        heads = self.num_heads
        g2 = np.ascontiguousarray(grad).reshape(o2.shape[0], -1)
        out_kernel = self.params["output_kernel"].reshape(o2.shape[1], -1)
        batch, t = query.shape[:2]
        do = np.empty((batch, heads, t, self.value_dim), dtype=g2.dtype)
        no_bias = np.zeros((heads, self.value_dim), g2.dtype)
        dq, dk, dv, attend, attend_work = attention_backward_parts(do, cache["attention"])
        given = {"query": dq, "key": dk, "value": dv}
        inputs = [query, value, key]
        dxs: list[np.ndarray | None] = [None, None, None]
        groups = [self._backward_group_parts(inputs[i], names, given, cache, dxs) for i, names in self._groups(inputs)]

        def part(rows: slice) -> tuple[np.ndarray | None, list[list[np.ndarray | None]]]:
            """The rows' dO (through the output projection), attention's gradients, the projections'
            gradients; returns the rows' output bias gradient and the groups' bias gradient sums."""
            block = slice(rows.start * t, rows.stop * t)
            heads_first(np.matmul(g2[block], out_kernel.T).reshape(-1, t, heads, self.value_dim), no_bias, do[rows])
            attend(rows)
            return (g2[block].sum(axis=0) if self.use_bias else None), [group[0](rows) for group in groups]

        work = t * out_kernel.size + attend_work + sum(group[1] for group in groups)
        results = threads.run(part, threads.parts(batch, work))
        threads.matmul_tn_many([(o2, g2, self.grads["output_kernel"].reshape(out_kernel.shape)),
                                *(group[2] for group in groups)])
        if self.use_bias:
            np.sum([bias for bias, _ in results], axis=0, out=self.grads["output_bias"])
        for j, group in enumerate(groups):
            group[3]([sums[j] for _, sums in results])
        if len(self.input_shape) == 4:
            dxs.append(None)  # the mask is not differentiable
        return dxs if cache.input_grad else None

    def _backward_group_parts(self, source: np.ndarray, names: list[str], given: dict[str, np.ndarray],
                              cache: Cache, dxs: list[np.ndarray | None]) -> tuple:
        """The backward pass of the projections ``names`` of the input ``source``, set up: ``(part, work, product,
        finish)``. ``part(rows)`` moves those batch rows of their gradients in the heads' layout (``given``) into
        one ``(batch * time, sum of widths)`` matrix, summing the bias gradients on the way (returned), and
        computes the rows' input gradients into ``dxs`` (when ``cache.input_grad``); ``product`` is the kernels'
        gradient as ``(a, b, out)`` for :func:`barenet.threads.matmul_tn_many`; ``finish(sums)`` stores the
        kernels' and (from every part's ``sums``) the biases' gradients."""
        x = source.reshape(-1, source.shape[-1])
        batch, steps = source.shape[:2]
        heads = self.num_heads
        widths = [heads * self.params[f"{n}_kernel"].shape[2] for n in names]
        bounds = np.cumsum([0, *widths])
        d2 = np.empty((len(x), bounds[-1]), dtype=x.dtype)  # the gradients of the group's projections
        positions = [_POSITIONS[name] for name in names]
        shared = cache.shared_inputs
        if not cache.input_grad:
            products = []
        elif len(names) > 1 and shared is not None and len({shared[p] for p in positions}) == 1:
            # one tensor's inputs, whose gradients the caller adds up: their sum, d2 times all their kernels
            products = [(slice(0, bounds[-1]), self._kernel(names), shared[positions[0]])]
        else:  # one gradient per input, even where one array is several inputs
            products = [(slice(bounds[j], bounds[j + 1]), self._kernel([name]), position)
                        for j, (name, position) in enumerate(zip(names, positions, strict=True))]
        for _, _, position in products:
            dxs[position] = np.empty(source.shape, dtype=x.dtype)

        def part(rows: slice) -> list[np.ndarray | None]:
            block = slice(rows.start * steps, rows.stop * steps)
            sums = []
            for j, name in enumerate(names):
                total = np.empty((heads, widths[j] // heads)) if self.use_bias else None
                heads_last(given[name][rows], d2[block, bounds[j]:bounds[j + 1]].reshape(
                    -1, steps, heads, widths[j] // heads), total)
                sums.append(total)
            for columns, kernel, position in products:
                np.matmul(d2[block, columns], kernel.T, out=dxs[position][rows].reshape(-1, kernel.shape[0]))
            return sums

        dkernel = np.empty((x.shape[1], d2.shape[1]), dtype=x.dtype)

        def finish(sums: list[list[np.ndarray | None]]) -> None:
            for j, name in enumerate(names):
                self.grads[f"{name}_kernel"].reshape(x.shape[1], widths[j])[...] = dkernel[:, bounds[j]:bounds[j + 1]]
                if self.use_bias:
                    self.grads[f"{name}_bias"][...] = np.sum([total[j] for total in sums], axis=0)

        return part, steps * 2 * d2.shape[1] * x.shape[1], (x, d2, dkernel), finish

    def get_config(self):
        config = super().get_config()
        config.pop("input_shape", None)
        return {
            **config,
            "num_heads": self.num_heads,
            "key_dim": self.key_dim,
            "value_dim": self.value_dim,
            "dropout": self.dropout,
            "use_bias": self.use_bias,
            "output_shape": self.out_dim,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
        }

    def __repr__(self) -> str:
        return f"MultiHeadAttention(num_heads={self.num_heads}, key_dim={self.key_dim})"
