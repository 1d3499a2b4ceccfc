"""Scaled dot-product attention against torch.nn.functional.scaled_dot_product_attention, in float64.

Layouts are the same in both: ``q : (batch, heads, T, d)``, ``k : (batch, heads, S, d)``, ``v : (batch, heads, S,
dv)``, and a boolean mask True where attention is allowed. PyTorch takes either a mask or ``is_causal``; where
barenet gets both, PyTorch gets their logical and, with the lower triangle ``torch.ones(T, S).tril()``.
Outputs and the gradients of q, k and v must agree to 1e-10.
"""

from __future__ import annotations

import numpy as np
import pytest

import barenet as bn

torch = pytest.importorskip("torch")

attention = bn.functional.scaled_dot_product_attention
attention_backward = bn.functional.scaled_dot_product_attention_backward
BATCH, HEADS = 2, 3


def _inputs(t, s, d=4, dv=5, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((BATCH, HEADS, n, width)).astype(dtype) for n, width in ((t, d), (s, d), (s, dv)))
    return q, k, v, rng.standard_normal((BATCH, HEADS, t, dv)).astype(dtype)


def _mask(kind, t, s):
    rng = np.random.default_rng(1)
    if kind is None:
        return None
    if kind == "keys":  # padding: (batch, 1, 1, S); the last two keys of batch entry 1 are padding
        mask = np.ones((BATCH, 1, 1, s), bool)
        mask[1, ..., -2:] = False
        return mask
    if kind == "square":  # one (T, S) mask for every batch entry and head
        return rng.random((t, s)) < 0.6
    mask = rng.random((BATCH, HEADS, t, s)) < 0.6  # "full", with some queries that may attend to nothing
    mask[0, 1, 0] = False
    mask[1, 2, -1] = False
    return mask


def _torch(q, k, v, dout, mask, causal, **kwargs):
    """PyTorch's output and the gradients of q, k, v for the output gradient ``dout``."""
    qt, kt, vt = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    attn_mask, is_causal = (None if mask is None else torch.tensor(mask)), causal
    if causal and mask is not None:
        attn_mask, is_causal = attn_mask & torch.ones(q.shape[2], k.shape[2], dtype=torch.bool).tril(), False
    out = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, attn_mask=attn_mask, is_causal=is_causal,
                                                           **kwargs)
    out.backward(torch.tensor(dout))
    return out.detach().numpy(), qt.grad.numpy(), kt.grad.numpy(), vt.grad.numpy()


def _barenet(q, k, v, dout, mask, causal, **kwargs):
    cache = {}
    out = attention(q, k, v, mask=mask, causal=causal, cache=cache, **kwargs)
    return (out, *attention_backward(dout, cache))


SIZES = {"self": (6, 6), "cross-longer-keys": (4, 7), "cross-longer-queries": (7, 4), "one-query": (1, 5)}


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
@pytest.mark.parametrize("mask_kind", [None, "keys", "square", "full"])
@pytest.mark.parametrize("size", SIZES)
def test_outputs_and_gradients_match_torch(size, mask_kind, causal):
    t, s = SIZES[size]
    q, k, v, dout = _inputs(t, s)
    mask = _mask(mask_kind, t, s)
    ours, theirs = _barenet(q, k, v, dout, mask, causal), _torch(q, k, v, dout, mask, causal)
    for name, a, b in zip(("output", "dq", "dk", "dv"), ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=name)


def test_a_scale_is_the_scale_of_torch():
    q, k, v, dout = _inputs(5, 6, d=8)
    ours, theirs = _barenet(q, k, v, dout, None, True, scale=0.9), _torch(q, k, v, dout, None, True, scale=0.9)
    for name, a, b in zip(("output", "dq", "dk", "dv"), ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=name)


def test_queries_with_nothing_to_attend_to_give_zeros_in_both():
    q, k, v, dout = _inputs(4, 5)
    mask = np.ones((BATCH, HEADS, 4, 5), bool)
    mask[0, 1, 2] = mask[1, :, 0] = False
    ours, theirs = _barenet(q, k, v, dout, mask, False), _torch(q, k, v, dout, mask, False)
    for a, b in zip(ours, theirs, strict=True):
        assert np.isfinite(b).all()  # PyTorch gives zeros too, not NaN
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    for out in (ours[0], theirs[0]):
        np.testing.assert_array_equal(out[0, 1, 2], 0)
        np.testing.assert_array_equal(out[1, :, 0], 0)
    np.testing.assert_array_equal(ours[1][1, :, 0], 0)  # dq of those queries


def test_float32_is_close_to_torch():
    q, k, v, dout = _inputs(16, 24, d=8, dv=8, dtype=np.float32)
    mask = _mask("full", 16, 24)
    ours, theirs = _barenet(q, k, v, dout, mask, True), _torch(q, k, v, dout, mask, True)
    for name, a, b in zip(("output", "dq", "dk", "dv"), ours, theirs, strict=True):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5, err_msg=name)


@pytest.mark.parametrize("causal", [False, True], ids=["full", "causal"])
def test_dropout_matches_an_explicit_torch_reference_with_the_same_mask(causal):
    """PyTorch draws its own dropout mask, so the reference is written out with barenet's: the draws
    ``rng.random(shape, dtype=np.float32)`` kept where below ``1 - dropout``, the kept weights scaled by
    ``1 / (1 - dropout)``."""
    t, s, rate = 5, 6, 0.3
    q, k, v, dout = _inputs(t, s)
    mask = _mask("keys", t, s)
    kept = np.random.default_rng(7).random((BATCH, HEADS, t, s), dtype=np.float32) < 1 - rate
    ours = _barenet(q, k, v, dout, mask, causal, dropout=rate, rng=np.random.default_rng(7))

    qt, kt, vt = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    allowed = torch.tensor(np.broadcast_to(mask, (BATCH, HEADS, t, s)))
    if causal:
        allowed = allowed & torch.ones(t, s, dtype=torch.bool).tril()
    scores = (qt @ kt.transpose(-1, -2) / np.sqrt(q.shape[-1])).masked_fill(~allowed, -torch.inf)
    weights = torch.softmax(scores, dim=-1) * torch.tensor(kept) / (1 - rate)
    out = weights @ vt
    out.backward(torch.tensor(dout))
    theirs = out.detach().numpy(), qt.grad.numpy(), kt.grad.numpy(), vt.grad.numpy()
    for name, a, b in zip(("output", "dq", "dk", "dv"), ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=name)
