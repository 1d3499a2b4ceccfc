"""Read the weights of one :class:`~barenet.layers.MultiHeadAttention` from the attention subgraph the walk is in.

Inside a subgraph that :func:`._attention_scan.find_regions` picked out, values are not computed: each is a
:class:`Sym`, an integer array of the value's (concrete) shape whose entries say which element of a
:class:`Space` the value holds there, times a scale. The spaces are the subgraph's inputs (a barenet tensor, its
batch axis made ``batch`` long), the outputs of its projections (each projection records which elements it read
as rows and columns, its kernel and its bias) and the result of the attention itself. The moves (``Reshape``,
``Transpose``, ``Gather``, ``Split`` ...) act on those index arrays exactly as on values, whatever the exporter's
arrangement, the batch folded into the heads included; a ``Mul`` by a constant scales. The scores product, the
mask and the softmax are recorded in :class:`Scores`.

At the subgraph's end, :func:`read_attention` checks from the indices alone that the whole computes multi-head
attention (each head's queries, keys and values are columns of the projections of one position of one sample,
heads split alike in every sample, the result joined back per position into the output projection's rows) and
reads the heads' columns out of the projection kernels into Keras's layout. Anything else is refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._checks import bad

#: A constant added to the scores at or below this blocks the key (exporters use -inf, finfo.min or -1e30).
BLOCKED = -1e9
#: A product of the scores' scales within this of ``1/sqrt(key_dim)`` is that value written in float32.
SCALE_TOLERANCE = 1e-6


@dataclass(eq=False)
class Space:
    """Elements a :class:`Sym` refers to: a subgraph input (``tensor``), a projection's output (``inp`` the
    elements it read, ``kernel``, ``bias`` per element), or the attention's result (``scores``, ``values``)."""

    shape: tuple[int, ...]
    tensor: Any = None
    source: Space | None = None
    inp: np.ndarray | None = None
    kernel: np.ndarray | None = None
    bias: np.ndarray | None = None
    has_bias: bool = False
    scores: Scores | None = None
    values: Sym | None = None


@dataclass(frozen=True, eq=False)
class Sym:
    """A value inside an attention subgraph: ``scale * space[ref]`` elementwise."""

    ref: np.ndarray
    space: Space
    scale: float = 1.0

    @property
    def shape(self) -> tuple[int, ...]:  # read by Shape nodes
        return self.ref.shape


@dataclass(eq=False)
class Scores:
    """``scale * (query @ key) + bias``, with ``blocked`` keys replaced by a large negative value;
    ``softmax`` once the softmax is taken."""

    query: Sym
    key: Sym
    scale: float = 1.0
    bias: np.ndarray = field(default=None)  # type: ignore[assignment]
    blocked: np.ndarray = field(default=None)  # type: ignore[assignment]
    softmax: bool = False

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.query.shape[:-1], self.key.shape[-1])


@dataclass(frozen=True, eq=False)
class NanTest:
    """``IsNaN`` of the attention weights, waiting for the ``Where`` that zeroes them."""

    probs: Scores

    @property
    def shape(self) -> tuple[int, ...]:
        return self.probs.shape


@dataclass
class AttentionSpec:
    """What :func:`read_attention` found: the layer's sizes, its inputs' spaces and its weights."""

    heads: int
    key_dim: int
    value_dim: int
    out_dim: int
    causal: bool
    sources: tuple[Space, Space, Space]  # query, value, key
    arrays: dict[str, np.ndarray]
    use_bias: bool


def source_sym(space: Space, axes: tuple[int | None, ...]) -> Sym:
    """A subgraph input held by barenet as ``space.shape`` (batch first), seen in the ONNX layout ``axes``
    (for each ONNX axis the barenet axis, ``None`` for an added axis of size 1)."""
    ids = np.arange(math.prod(space.shape), dtype=np.int64).reshape(space.shape)
    order = [a for a in axes if a is not None]
    ids = ids.transpose(order)
    return Sym(ids.reshape([1 if a is None else space.shape[a] for a in axes]), space)


def project(x: Sym, kernel: np.ndarray) -> Sym:
    """``x @ kernel`` over the last axis: a new projection space (``x``'s scale goes into the kernel)."""
    shape = (*x.shape[:-1], kernel.shape[1])
    space = Space(shape, source=x.space, inp=x.ref.copy(), kernel=kernel * x.scale,
                  bias=np.zeros(shape, dtype=np.float64))
    return Sym(np.arange(math.prod(shape), dtype=np.int64).reshape(shape), space)


def add_bias(x: Sym, c: np.ndarray, label: str) -> Sym:
    """``x + c`` where ``x`` holds a projection's outputs: ``c`` joins that projection's bias."""
    space = x.space
    if space.bias is None:
        raise bad(f"{label} adds a constant to the attention's inputs or to its result before the output "
                  "projection; barenet's MultiHeadAttention has biases on its projections only")
    if np.unique(x.ref).size != x.ref.size:
        raise bad(f"{label} adds a constant to a tensor that repeats projected values")
    c = np.broadcast_to(np.asarray(c, dtype=np.float64), x.shape)
    space.bias.reshape(-1)[x.ref.reshape(-1)] += (c / x.scale).reshape(-1)
    space.has_bias = True
    return x


def read_attention(end: Sym, batch: int, label: str) -> AttentionSpec:
    """The multi-head attention that ``end`` (the subgraph's last value) computes, or a refusal naming ``label``.

    ``end`` must hold, at ``[b, t, n]``, column ``n`` of the output projection of the joined heads of position
    ``t`` of sample ``b``; the attention's weights are read back through it.
    """
    out = end.space
    ctx_space = out.source
    if out.kernel is None or ctx_space is None or ctx_space.scores is None:
        raise bad(f"{label} does not end in a projection of the attention's result")
    scores = ctx_space.scores
    values = ctx_space.values
    q, k = scores.query, scores.key
    if not scores.softmax:
        raise bad(f"{label} takes no softmax of the scores")
    n_l = math.prod(q.shape[:-2])
    if q.shape[:-2] != k.shape[:-2] or values.shape[:-2] != q.shape[:-2] or len(q.shape) < 3:
        raise bad(f"{label} multiplies tensors of shapes {list(q.shape)} and {list(k.shape)}, and the weights by "
                  f"values {list(values.shape)}; barenet's attention has one (batch, head) per leading entry")
    t_q, s_k = q.shape[-2], k.shape[-1]
    # queries: [l, t, j] -> projection row of position t of sample b(l), column col_q[l, j]
    b_q, col_q = _heads_of(q.ref.reshape(n_l, t_q, -1), q.space, label, "queries", time_axis=1)
    b_k, col_k = _heads_of(k.ref.reshape(n_l, -1, s_k).transpose(0, 2, 1), k.space, label, "keys", time_axis=1)
    b_v, col_v = _heads_of(values.ref.reshape(n_l, s_k, -1), values.space, label, "values", time_axis=1)
    if not (np.array_equal(b_q, b_k) and np.array_equal(b_q, b_v)):
        raise bad(f"{label} mixes the queries, keys and values of different samples")
    head, heads = _assign_heads(b_q, col_q, col_k, col_v, batch, label)
    first = [int(np.flatnonzero(head == h)[0]) for h in range(heads)]
    causal = _mask(scores, n_l, label)
    key_dim, value_dim = col_q.shape[1], col_v.shape[1]
    factor = q.scale * k.scale * scores.scale * math.sqrt(key_dim)
    if abs(factor - 1) <= SCALE_TOLERANCE:
        factor = 1.0
    arrays: dict[str, np.ndarray] = {}
    biased = False
    for name, sym, cols, scale in (("query", q, col_q, factor), ("key", k, col_k, 1.0),
                                   ("value", values, col_v, values.scale)):
        picked = cols[first]  # (heads, width)
        arrays[f"{name}_kernel"] = sym.space.kernel[:, picked] * scale
        arrays[f"{name}_bias"] = _column_bias(sym.space, label)[picked] * scale
        biased |= sym.space.has_bias
    kernel, bias = _output_weights(end, b_q, head, heads, t_q, value_dim, label)
    arrays["output_kernel"], arrays["output_bias"] = kernel * end.scale, bias * end.scale
    biased |= out.has_bias
    if not biased:
        arrays = {k: v for k, v in arrays.items() if k.endswith("_kernel")}
    sources = (q.space.source, values.space.source, k.space.source)
    return AttentionSpec(heads, key_dim, value_dim, kernel.shape[-1], causal, sources, arrays, biased)


def _heads_of(ref: np.ndarray, space: Space, label: str, what: str, time_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """For ``ref : (heads*batch, time, width)`` into a projection of a subgraph input: the sample of each
    leading entry and the projection columns ``(entries, width)`` it takes, after checking that entry ``[l, t]``
    is position ``t`` of that sample in every column."""
    source = space.source
    if space.kernel is None or source is None or source.tensor is None or len(source.shape) != 3:
        raise bad(f"{label} computes its {what} from something other than a projection of a sequence")
    width = space.shape[-1]
    rows = _rows_of(space, label)  # projection row -> row of the input (sample * time + position)
    row, col = np.divmod(ref, width)
    sample, position = np.divmod(rows.reshape(-1)[row], source.shape[1])
    steps = ref.shape[time_axis]
    if steps != source.shape[1] or np.any(position != np.arange(steps)[None, :, None]):
        raise bad(f"{label} does not take its {what} position by position from its input's {source.shape[1]} "
                  "steps")
    if np.any(sample != sample[:, :1, :1]) or np.any(col != col[:, :1, :]):
        raise bad(f"{label} mixes samples or columns within one head of its {what}")
    return sample[:, 0, 0], col[:, 0, :]


def _rows_of(space: Space, label: str) -> np.ndarray:
    """Which input row each row of a projection of a subgraph input reads: the input's ``features`` values of
    that row, in order."""
    source = space.source
    features = source.shape[-1]
    inp = space.inp.reshape(-1, space.inp.shape[-1])
    if inp.shape[1] != features or np.any(inp[:, 0] % features) or np.any(inp != inp[:, :1] + np.arange(features)):
        raise bad(f"{label} projects something other than the last axis of its input")
    return (inp[:, 0] // features).reshape(space.inp.shape[:-1])


def _assign_heads(sample: np.ndarray, col_q: np.ndarray, col_k: np.ndarray, col_v: np.ndarray, batch: int,
                  label: str) -> tuple[np.ndarray, int]:
    """The head of each leading entry: the entries of every sample must take the same sets of columns."""
    def columns(entry: int) -> tuple[bytes, bytes, bytes]:
        return col_q[entry].tobytes(), col_k[entry].tobytes(), col_v[entry].tobytes()

    first_sample = [int(e) for e in np.flatnonzero(sample == 0)]
    heads = len(first_sample)
    signature = {columns(e): h for h, e in enumerate(first_sample)}
    head = np.array([signature.get(columns(e), -1) for e in range(sample.size)])
    counts = np.bincount(sample, minlength=batch)
    if heads == 0 or len(signature) != heads or np.any(head < 0) or len(counts) != batch or np.any(counts != heads):
        raise bad(f"{label} does not split every sample into the same heads")
    for b in range(batch):
        if sorted(head[sample == b]) != list(range(heads)):
            raise bad(f"{label} does not split every sample into the same heads")
    return head, heads


def _mask(scores: Scores, entries: int, label: str) -> bool:
    """Whether the constant mask on the scores is causal (``False``: no mask); any other mask is refused."""
    bias = scores.bias.reshape(entries, *scores.shape[-2:])
    blocked = (scores.blocked.reshape(bias.shape) | (bias <= BLOCKED))
    if np.any((bias != 0) & ~blocked):
        raise bad(f"{label} adds a bias to the attention scores; barenet's MultiHeadAttention takes a mask "
                  "(0 or a large negative value), not a bias")
    if np.any(blocked != blocked[:1]):
        raise bad(f"{label} masks samples or heads differently; barenet imports one constant mask for all")
    steps, keys = blocked.shape[1:]
    if not blocked.any():
        return False
    if np.array_equal(blocked[0], ~np.tri(steps, keys, dtype=bool)):
        return True
    raise bad(f"{label} masks the attention with a constant mask other than causal; barenet's MultiHeadAttention "
              "takes other masks as an input")


def _column_bias(space: Space, label: str) -> np.ndarray:
    bias = space.bias.reshape(-1, space.shape[-1])
    if np.any(bias != bias[:1]):
        raise bad(f"{label} adds a bias that differs between positions")
    return bias[0]


def _output_weights(end: Sym, sample: np.ndarray, head: np.ndarray, heads: int, steps: int, value_dim: int,
                    label: str) -> tuple[np.ndarray, np.ndarray]:
    """``(output_kernel : (heads, value_dim, out), output_bias : (out,))`` after checking that ``end[b, t]``
    is the output projection of the joined heads of position ``t`` of sample ``b``."""
    out = end.space
    ctx = out.source
    width = out.shape[-1]
    inp = out.inp.reshape(-1, out.inp.shape[-1])
    entry, rest = np.divmod(inp, steps * value_dim)
    position, j = np.divmod(rest, value_dim)
    sample_of, head_of = sample[entry], head[entry]
    if inp.shape[1] != heads * value_dim or np.any(sample_of != sample_of[:, :1]) \
            or np.any(position != position[:, :1]) or np.any(head_of != head_of[:1]) or np.any(j != j[:1]):
        raise bad(f"{label} does not join the heads of each position back into one row before its output "
                  "projection")
    slot = head_of[0] * value_dim + j[0]
    if sorted(slot) != list(range(heads * value_dim)) or ctx.shape[-2] != steps:
        raise bad(f"{label} does not join every head's values once before its output projection")
    kernel = np.empty((heads, value_dim, width))
    kernel.reshape(heads * value_dim, width)[slot] = out.kernel
    batch = int(sample.max()) + 1
    if end.ref.shape != (batch, steps, width):
        raise bad(f"{label} ends in a tensor of shape {list(end.ref.shape)}; expected (batch, {steps}, {width})")
    row, n = np.divmod(end.ref, width)
    if np.any(n != np.arange(width)) or np.any(sample_of[row[..., 0], 0] != np.arange(batch)[:, None]) \
            or np.any(position[row[..., 0], 0] != np.arange(steps)[None, :]):
        raise bad(f"{label} does not end with the projected rows in (batch, time, features) order")
    return kernel, _column_bias(out, label)
